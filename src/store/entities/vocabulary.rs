//! The domain's vocabularies as column types: entities hold `Role`,
//! `UserStatus`, `StatusReason` and `LinkPurpose` themselves, stored as the
//! text of their `as_str` spelling (the columns stay `VARCHAR(32)`: no data
//! migration). The sea-orm traits are implemented here rather than derived in
//! `domain`, which keeps `domain` free of the database crate.
//!
//! Reading text that is none of a vocabulary's spellings fails here and only
//! here, as the row's decoding error (`DbErr::Type`, a `StoreError` above).

use sea_orm::{
    ColIdx, DbErr, IntoActiveValue, QueryResult, TryGetError, TryGetable, Value,
    sea_query::{ArrayType, ColumnType, Nullable, StringLen, ValueType, ValueTypeErr},
};

use crate::domain::{Role, StatusReason, UserStatus, link::LinkPurpose};

/// Width of every vocabulary column in the initial migration.
const STORED_LEN: u32 = 32;

/// Every `$type` is stored as `$type::as_str` and read by `$type::parse`.
/// `From<$type> for Value` is also how hand-written SQL binds a word: no
/// statement spells one as a literal of its own.
macro_rules! stored_vocabulary {
    ($type:ty, $name:literal) => {
        impl From<$type> for Value {
            fn from(word: $type) -> Value {
                Value::from(word.as_str())
            }
        }

        impl TryGetable for $type {
            fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
                let text = String::try_get_by(res, idx)?;
                <$type>::parse(&text).ok_or_else(|| {
                    TryGetError::DbErr(DbErr::Type(format!(concat!("unknown stored ", $name, " {:?}"), text)))
                })
            }
        }

        impl ValueType for $type {
            fn try_from(value: Value) -> Result<Self, ValueTypeErr> {
                let text = <String as ValueType>::try_from(value)?;
                <$type>::parse(&text).ok_or(ValueTypeErr)
            }

            fn type_name() -> String {
                stringify!($type).to_owned()
            }

            fn array_type() -> ArrayType {
                ArrayType::String
            }

            fn column_type() -> ColumnType {
                ColumnType::String(StringLen::N(STORED_LEN))
            }
        }

        impl Nullable for $type {
            fn null() -> Value {
                Value::String(None)
            }
        }

        impl IntoActiveValue<$type> for $type {
            fn into_active_value(self) -> sea_orm::ActiveValue<$type> {
                sea_orm::ActiveValue::Set(self)
            }
        }
    };
}

stored_vocabulary!(Role, "role");
stored_vocabulary!(UserStatus, "status");
stored_vocabulary!(StatusReason, "status reason");
stored_vocabulary!(LinkPurpose, "link purpose");

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T], spelling: fn(T) -> &'static str)
    where
        T: ValueType + Into<Value> + Copy + PartialEq + std::fmt::Debug,
    {
        for &word in all {
            assert!(spelling(word).len() <= STORED_LEN as usize, "{word:?} fits its column");
            assert_eq!(word.into(), Value::from(spelling(word)), "stored as its spelling");
            assert_eq!(<T as ValueType>::try_from(word.into()).ok(), Some(word));
        }
        assert!(<T as ValueType>::try_from(Value::from("NOT A WORD")).is_err());
    }

    #[test]
    fn every_word_is_stored_as_its_spelling_and_read_back() {
        round_trips(&Role::ALL, Role::as_str);
        round_trips(&UserStatus::ALL, UserStatus::as_str);
        round_trips(&StatusReason::ALL, StatusReason::as_str);
        round_trips(&LinkPurpose::ALL, LinkPurpose::as_str);
    }

    #[tokio::test]
    async fn unknown_stored_text_fails_the_read_with_a_named_error() {
        use sea_orm::{ConnectionTrait, EntityTrait, Statement};

        use crate::store::{StoreError, entities::user, users::tests::store_with_users};
        let (store, users) = store_with_users(&["acme_ann"]).await;
        let conn = store.connection();
        let corrupt = Statement::from_sql_and_values(
            conn.get_database_backend(),
            "UPDATE users SET role = 'OVERLORD' WHERE id = $1",
            [users[0].id.clone().into()],
        );
        conn.execute_raw(corrupt).await.unwrap();
        let error = StoreError::from(user::Entity::find_by_id(users[0].id.clone()).one(conn).await.unwrap_err());
        assert!(error.to_string().contains(r#"unknown stored role "OVERLORD""#), "{error}");
    }
}
