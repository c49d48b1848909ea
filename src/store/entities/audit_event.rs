//! The `audit_events` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub occurred_at: i64,
    pub subscription_id: Option<String>,
    pub actor_user_id: Option<String>,
    pub actor_login: Option<String>,
    pub action: String,
    pub target_user_id: Option<String>,
    pub target_login: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
