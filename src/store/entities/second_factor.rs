//! The `second_factors` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "second_factors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// Sealed under data key `data_key_id` (NULL: a row from before encryption, in clear).
    pub totp_secret: Vec<u8>,
    pub pin_hash: Option<String>,
    pub new_pin_required: bool,
    pub last_accepted_step: Option<i64>,
    pub assigned_at: i64,
    pub updated_at: i64,
    pub data_key_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
