//! Users and their password credentials.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult as _, QueryFilter, Set};

use sea_orm::sea_query::ExprTrait as _;

use super::{
    StoreResult,
    entities::{password_credential, user},
    new_id,
};
use crate::domain::{Role, StatusReason, UserLogin, UserStatus};

pub struct NewUser<'a> {
    pub subscription_id: &'a str,
    pub business_unit_id: Option<&'a str>,
    pub user_login: &'a UserLogin,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub role: Role,
    pub status: UserStatus,
}

pub async fn insert_user<C: ConnectionTrait>(conn: &C, new: NewUser<'_>, now_ms: i64) -> StoreResult<user::Model> {
    Ok(user::ActiveModel {
        id: Set(new_id()),
        subscription_id: Set(new.subscription_id.to_owned()),
        business_unit_id: Set(new.business_unit_id.map(str::to_owned)),
        user_login: Set(new.user_login.as_str().to_owned()),
        email: Set(new.email.to_owned()),
        first_name: Set(new.first_name.to_owned()),
        last_name: Set(new.last_name.to_owned()),
        role: Set(new.role),
        status: Set(new.status),
        status_reason: Set(None),
        failed_logins: Set(0),
        created_at: Set(now_ms),
        updated_at: Set(now_ms),
        last_login_at: Set(None),
    }
    .insert(conn)
    .await?)
}

/// Exact, case-sensitive lookup (the column is compared byte for byte on
/// both engines).
pub async fn find_by_login<C: ConnectionTrait>(conn: &C, login: &str) -> StoreResult<Option<user::Model>> {
    Ok(user::Entity::find().filter(user::Column::UserLogin.eq(login)).one(conn).await?)
}

/// The users with these logins (exact match), keyed by login; unknown ones are absent.
pub async fn find_by_logins<C: ConnectionTrait>(
    conn: &C,
    logins: &[String],
) -> StoreResult<std::collections::HashMap<String, user::Model>> {
    let mut found = std::collections::HashMap::with_capacity(logins.len());
    for chunk in logins.chunks(super::sql::BATCH_ROWS) {
        let users = user::Entity::find().filter(user::Column::UserLogin.is_in(chunk.iter().cloned())).all(conn).await?;
        found.extend(users.into_iter().map(|user| (user.user_login.clone(), user)));
    }
    Ok(found)
}

/// The users with these ids, keyed by id; unknown ones are absent.
pub async fn find_by_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[&str],
) -> StoreResult<std::collections::HashMap<String, user::Model>> {
    let mut found = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(super::sql::BATCH_ROWS) {
        let users = user::Entity::find().filter(user::Column::Id.is_in(chunk.iter().copied())).all(conn).await?;
        found.extend(users.into_iter().map(|user| (user.id.clone(), user)));
    }
    Ok(found)
}

/// What a password login needs of an account, read in one statement: the
/// user, its password hash and whether it has a second factor.
pub struct LoginCandidate {
    pub user: user::Model,
    pub password_hash: Option<String>,
    /// When the password was set: a rehash keeps it (see [`set_password_hashes`]).
    pub password_set_at: Option<i64>,
    pub has_second_factor: bool,
}

pub async fn find_for_login<C: ConnectionTrait>(conn: &C, login: &str) -> StoreResult<Option<LoginCandidate>> {
    login_candidate(conn, "users.user_login", login).await
}

/// [`find_for_login`] by id, for the re-check inside a login's transaction
/// once [`lock`] holds the row: what the password was verified against may
/// have changed since.
pub async fn find_for_login_by_id<C: ConnectionTrait>(conn: &C, id: &str) -> StoreResult<Option<LoginCandidate>> {
    login_candidate(conn, "users.id", id).await
}

async fn login_candidate<C: ConnectionTrait>(
    conn: &C,
    column: &'static str,
    value: &str,
) -> StoreResult<Option<LoginCandidate>> {
    let statement = format!(
        "SELECT users.*, password_credentials.hash AS password_hash, \
           password_credentials.updated_at AS password_set_at, \
           EXISTS (SELECT 1 FROM second_factors WHERE second_factors.user_id = users.id) AS has_second_factor \
         FROM users LEFT JOIN password_credentials ON password_credentials.user_id = users.id \
         WHERE {column} = $1"
    );
    let row = super::sql::query_one(conn, &statement, [value.into()]).await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(LoginCandidate {
        user: user::Model::from_query_result(&row, "")?,
        password_hash: row.try_get("", "password_hash")?,
        password_set_at: row.try_get("", "password_set_at")?,
        has_second_factor: row.try_get("", "has_second_factor")?,
    }))
}

/// Locks the users' rows until the transaction ends, in id order so that two
/// transactions locking overlapping sets wait instead of deadlocking.
/// PostgreSQL only: SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
pub async fn lock<C: ConnectionTrait>(conn: &C, user_ids: &[&str]) -> StoreResult<()> {
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let mut user_ids = user_ids.to_vec();
    user_ids.sort_unstable();
    for chunk in user_ids.chunks(super::sql::BATCH_ROWS) {
        let ids = super::sql::placeholders(1, chunk.len());
        let values: Vec<sea_orm::Value> = chunk.iter().map(|&id| id.into()).collect();
        let statement = format!("SELECT 1 FROM users WHERE id IN ({ids}) ORDER BY id FOR UPDATE");
        super::sql::query_all(conn, &statement, values).await?;
    }
    Ok(())
}

pub async fn find_by_id<C: ConnectionTrait>(conn: &C, id: &str) -> StoreResult<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id.to_owned()).one(conn).await?)
}

/// Sets or replaces a user's password hash.
pub async fn set_password_hash<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    hash: &str,
    now_ms: i64,
) -> StoreResult<()> {
    set_password_hashes(conn, &[(user_id, hash)], now_ms).await
}

/// Sets the password hash of each `(user_id, hash)`, a few hundred users per statement.
///
/// `updated_at` is when the *password* was set, and every setting moves it
/// forward, by a millisecond when the clock did not: a login tells "the
/// password changed since I checked it" from "another login rehashed the same
/// password" by it ([`replace_password_hash`] keeps it).
pub async fn set_password_hashes<C: ConnectionTrait>(
    conn: &C,
    credentials: &[(&str, &str)],
    now_ms: i64,
) -> StoreResult<()> {
    for chunk in credentials.chunks(super::sql::BATCH_ROWS) {
        let rows = (0..chunk.len()).map(|i| format!("(${}, ${}, $1)", 2 * i + 2, 2 * i + 3)).collect::<Vec<_>>();
        let statement = format!(
            "INSERT INTO password_credentials (user_id, hash, updated_at) VALUES {} \
             ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, \
               updated_at = CASE WHEN excluded.updated_at > password_credentials.updated_at \
                            THEN excluded.updated_at ELSE password_credentials.updated_at + 1 END",
            rows.join(", ")
        );
        let mut values: Vec<sea_orm::Value> = vec![now_ms.into()];
        for &(user_id, hash) in chunk {
            values.extend([user_id.into(), hash.into()]);
        }
        super::sql::execute(conn, &statement, values).await?;
    }
    Ok(())
}

/// A rehash: replaces `verified` by `new` (the same password under today's
/// parameters) only if `verified` is still the stored hash, so that a
/// password verified before a change is never written back over the new one.
/// The password's `updated_at` stays: it was not set again. True when replaced.
pub async fn replace_password_hash<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    verified: &str,
    new: &str,
) -> StoreResult<bool> {
    let changed = super::sql::execute(
        conn,
        "UPDATE password_credentials SET hash = $1 WHERE user_id = $2 AND hash = $3",
        [new.into(), user_id.into(), verified.into()],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn password_hash<C: ConnectionTrait>(conn: &C, user_id: &str) -> StoreResult<Option<String>> {
    Ok(password_credential::Entity::find_by_id(user_id.to_owned()).one(conn).await?.map(|credential| credential.hash))
}

/// After a failed attempt on an ACTIVE account: counts it and, when the count
/// reaches `threshold`, locks the account — all in one UPDATE guarded by
/// `status = ACTIVE`, so under any concurrency exactly one statement locks.
/// None when the account was not ACTIVE (nothing counted).
pub async fn record_failed_login<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    threshold: i32,
    now_ms: i64,
) -> StoreResult<Option<FailedLogin>> {
    let row = super::sql::query_one(
        conn,
        "UPDATE users SET failed_logins = failed_logins + 1, \
           status = CASE WHEN failed_logins + 1 >= $1 THEN $4 ELSE status END, \
           status_reason = CASE WHEN failed_logins + 1 >= $1 THEN $5 ELSE status_reason END, \
           updated_at = $2 \
         WHERE id = $3 AND status = $6 \
         RETURNING failed_logins, status",
        [
            threshold.into(),
            now_ms.into(),
            user_id.into(),
            UserStatus::Inactive.into(),
            StatusReason::Locked.into(),
            UserStatus::Active.into(),
        ],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let failed_logins: i32 = row.try_get_by_index(0)?;
    let status: UserStatus = row.try_get_by_index(1)?;
    Ok(Some(FailedLogin { failed_logins, locked: status == UserStatus::Inactive }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedLogin {
    pub failed_logins: i32,
    /// This very attempt locked the account.
    pub locked: bool,
}

/// After a success: the consecutive-failure count starts again. Returns the
/// row as it is now, or None when the account stopped being ACTIVE meanwhile
/// (deactivated, locked or deleted while the password was being checked):
/// the session is then refused, and its claims come from the fresh row.
pub async fn record_successful_login<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    now_ms: i64,
) -> StoreResult<Option<user::Model>> {
    let row = super::sql::query_one(
        conn,
        "UPDATE users SET failed_logins = 0, last_login_at = $1 WHERE id = $2 AND status = $3 RETURNING *",
        [now_ms.into(), user_id.into(), UserStatus::Active.into()],
    )
    .await?;
    Ok(row.map(|row| user::Model::from_query_result(&row, "")).transpose()?)
}

/// [`record_successful_login`] for the usual login, in one statement instead
/// of a re-read and an update: only while the account is still ACTIVE, holds
/// no second factor, and its password is still the one verified — the hash
/// that was checked, or another hash of it (a rehash keeps `updated_at`, every
/// change of password moves it). None means one of those changed: the caller
/// reads the row again to learn which. Call it with the row locked (see
/// [`lock`]), so that the conditions are read after any change that was in
/// flight has committed.
pub async fn record_login_with_password_unchanged<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    verified_hash: &str,
    password_set_at: Option<i64>,
    now_ms: i64,
) -> StoreResult<Option<user::Model>> {
    let row = super::sql::query_one(
        conn,
        "UPDATE users SET failed_logins = 0, last_login_at = $1 \
         WHERE id = $2 AND status = $3 \
           AND NOT EXISTS (SELECT 1 FROM second_factors WHERE second_factors.user_id = users.id) \
           AND EXISTS (SELECT 1 FROM password_credentials \
                       WHERE password_credentials.user_id = users.id \
                         AND (password_credentials.hash = $4 OR password_credentials.updated_at = $5)) \
         RETURNING *",
        [now_ms.into(), user_id.into(), UserStatus::Active.into(), verified_hash.into(), password_set_at.into()],
    )
    .await?;
    Ok(row.map(|row| user::Model::from_query_result(&row, "")).transpose()?)
}

/// Renames a login; a taken login is a `Duplicate`.
pub async fn rename<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    new_login: &UserLogin,
    now_ms: i64,
) -> StoreResult<()> {
    super::sql::execute(
        conn,
        "UPDATE users SET user_login = $1, updated_at = $2 WHERE id = $3",
        [new_login.as_str().into(), now_ms.into(), user_id.into()],
    )
    .await?;
    Ok(())
}

/// Which users a listing may return, and how it is filtered.
#[derive(Debug, Default, Clone)]
pub struct UserQuery<'a> {
    pub subscription_id: &'a str,
    /// Only this unit (a Unit Manager's scope, or a filter).
    pub business_unit_id: Option<&'a str>,
    /// Only this user (callers who see nobody else).
    pub only_user_id: Option<&'a str>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    /// Case-insensitive substring of login, email, first or last name.
    pub text: Option<&'a str>,
    /// Keyset cursor: logins strictly after this one.
    pub after_login: Option<&'a str>,
    pub limit: u64,
}

/// Users ordered by login; keyset pagination keeps pages stable while rows are added.
pub async fn list<C: ConnectionTrait>(conn: &C, query: &UserQuery<'_>) -> StoreResult<Vec<user::Model>> {
    use sea_orm::{QueryOrder, QuerySelect, sea_query::Condition};
    let mut select = user::Entity::find().filter(user::Column::SubscriptionId.eq(query.subscription_id));
    if let Some(unit) = query.business_unit_id {
        select = select.filter(user::Column::BusinessUnitId.eq(unit));
    }
    if let Some(id) = query.only_user_id {
        select = select.filter(user::Column::Id.eq(id));
    }
    if let Some(role) = query.role {
        select = select.filter(user::Column::Role.eq(role));
    }
    if let Some(status) = query.status {
        select = select.filter(user::Column::Status.eq(status));
    }
    if let Some(text) = query.text {
        let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
        let mut any = Condition::any();
        for column in [user::Column::UserLogin, user::Column::Email, user::Column::FirstName, user::Column::LastName] {
            any = any.add(lower(column).like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')));
        }
        select = select.filter(any);
    }
    if let Some(after) = query.after_login {
        select = select.filter(user::Column::UserLogin.gt(after));
    }
    Ok(select.order_by_asc(user::Column::UserLogin).limit(query.limit).all(conn).await?)
}

/// Users whose email is `email`, or whose name is `name` ("first", "last" or
/// "first last"), case-insensitive, within the same scope rules as [`list`].
pub async fn lookup<C: ConnectionTrait>(
    conn: &C,
    scope: &UserQuery<'_>,
    email: Option<&str>,
    name: Option<&str>,
) -> StoreResult<Vec<user::Model>> {
    use sea_orm::{QueryOrder, QuerySelect, sea_query::Condition};
    let mut matches = Condition::any();
    if let Some(email) = email {
        matches = matches.add(lower(user::Column::Email).eq(email.trim().to_lowercase()));
    }
    if let Some(name) = name {
        let name = name.trim().to_lowercase();
        matches = matches.add(lower(user::Column::FirstName).eq(name.clone()));
        matches = matches.add(lower(user::Column::LastName).eq(name.clone()));
        if let Some((first, last)) = name.split_once(' ') {
            matches = matches.add(
                Condition::all()
                    .add(lower(user::Column::FirstName).eq(first.trim()))
                    .add(lower(user::Column::LastName).eq(last.trim())),
            );
        }
    }
    let mut select =
        user::Entity::find().filter(user::Column::SubscriptionId.eq(scope.subscription_id)).filter(matches);
    if let Some(unit) = scope.business_unit_id {
        select = select.filter(user::Column::BusinessUnitId.eq(unit));
    }
    if let Some(id) = scope.only_user_id {
        select = select.filter(user::Column::Id.eq(id));
    }
    Ok(select.order_by_asc(user::Column::UserLogin).limit(scope.limit).all(conn).await?)
}

fn lower(column: user::Column) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Func::lower(sea_orm::sea_query::Expr::col(column)).into()
}

fn escape_like(value: &str) -> String {
    value.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The fields an administrator may change.
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
    pub business_unit_id: Option<String>,
}

pub async fn update_profile<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    update: &UserUpdate,
    now_ms: i64,
) -> StoreResult<()> {
    super::sql::execute(
        conn,
        "UPDATE users SET email = $1, first_name = $2, last_name = $3, role = $4, business_unit_id = $5, updated_at = $6 \
         WHERE id = $7",
        [
            update.email.clone().into(),
            update.first_name.clone().into(),
            update.last_name.clone().into(),
            update.role.into(),
            update.business_unit_id.clone().into(),
            now_ms.into(),
            id.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Moves a user from `from` to `to`, only if still in `from`: a concurrent
/// change makes this return false instead of overwriting it.
pub async fn change_status<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    from: UserStatus,
    to: UserStatus,
    reason: StatusReason,
    now_ms: i64,
) -> StoreResult<bool> {
    let changed = super::sql::execute(
        conn,
        "UPDATE users SET status = $1, status_reason = $2, failed_logins = 0, updated_at = $3 WHERE id = $4 AND status = $5",
        [to.into(), reason.into(), now_ms.into(), id.into(), from.into()],
    )
    .await?;
    Ok(changed == 1)
}

/// Forgets every credential of a user: password, second factor, live links.
pub async fn drop_credentials<C: ConnectionTrait>(conn: &C, id: &str, now_ms: i64) -> StoreResult<()> {
    super::sql::execute(conn, "DELETE FROM password_credentials WHERE user_id = $1", [id.into()]).await?;
    super::sql::execute(conn, "DELETE FROM second_factors WHERE user_id = $1", [id.into()]).await?;
    super::links::supersede_all(conn, id, now_ms).await
}

/// Which of these users hold a second-factor token.
pub async fn with_tokens<C: ConnectionTrait>(
    conn: &C,
    ids: &[String],
) -> StoreResult<std::collections::HashSet<String>> {
    use super::entities::second_factor;
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(second_factor::Entity::find()
        .filter(second_factor::Column::UserId.is_in(ids.iter().cloned()))
        .all(conn)
        .await?
        .into_iter()
        .map(|f| f.user_id)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{Store, second_factors, tenancy};

    /// An in-memory store with one subscription holding these ACTIVE users.
    pub(crate) async fn store_with_users(logins: &[&str]) -> (Store, Vec<user::Model>) {
        let store = crate::store::in_memory().await;
        let conn = store.connection();
        let new = tenancy::NewSubscription {
            name: "Acme",
            login_prefix: "acme",
            platform_id: "p1",
            users_define_own_password: false,
            lockout_threshold: 5,
        };
        let (subscription, _) = tenancy::insert_subscription(conn, new, 1).await.unwrap();
        let mut users = Vec::new();
        for login in logins {
            let login = UserLogin::parse(login).unwrap();
            let user = NewUser {
                subscription_id: &subscription.id,
                business_unit_id: None,
                user_login: &login,
                email: "a@example.com",
                first_name: "A",
                last_name: "B",
                role: Role::Reader,
                status: UserStatus::Active,
            };
            users.push(insert_user(conn, user, 1).await.unwrap());
        }
        (store, users)
    }

    async fn store_with_user(login: &str) -> (Store, user::Model) {
        let (store, mut users) = store_with_users(&[login]).await;
        (store, users.remove(0))
    }

    #[tokio::test]
    async fn a_login_candidate_brings_its_hash_and_second_factor_in_one_read() {
        let (store, user) = store_with_user("acme_ann").await;
        let conn = store.connection();
        assert!(find_for_login(conn, "acme_Ann").await.unwrap().is_none(), "logins match exactly");
        let found = find_for_login(conn, "acme_ann").await.unwrap().unwrap();
        assert_eq!((found.user, found.password_hash, found.has_second_factor), (user.clone(), None, false));

        set_password_hash(conn, &user.id, "$argon2id$stored", 2).await.unwrap();
        second_factors::assign(
            conn,
            &crate::crypto::data_keys::DataKeys::ephemeral(),
            &user.id,
            b"0123456789abcdef0123",
            3,
        )
        .await
        .unwrap();
        let found = find_for_login(conn, "acme_ann").await.unwrap().unwrap();
        assert_eq!(found.password_hash.as_deref(), Some("$argon2id$stored"));
        assert!(found.has_second_factor);
    }

    #[tokio::test]
    async fn a_rehash_replaces_only_the_hash_that_was_verified() {
        let (store, user) = store_with_user("acme_fay").await;
        let conn = store.connection();
        async fn set_at(conn: &sea_orm::DatabaseConnection, id: &str) -> Option<i64> {
            find_for_login_by_id(conn, id).await.unwrap().unwrap().password_set_at
        }
        set_password_hash(conn, &user.id, "old params", 10).await.unwrap();
        assert!(replace_password_hash(conn, &user.id, "old params", "new params").await.unwrap());
        assert_eq!(password_hash(conn, &user.id).await.unwrap().as_deref(), Some("new params"));
        assert_eq!(set_at(conn, &user.id).await, Some(10), "a rehash does not set the password again");
        // Changed meanwhile: the stale rehash writes nothing.
        set_password_hash(conn, &user.id, "changed", 12).await.unwrap();
        assert!(!replace_password_hash(conn, &user.id, "new params", "rehash of the old").await.unwrap());
        assert_eq!(password_hash(conn, &user.id).await.unwrap().as_deref(), Some("changed"));
        assert_eq!(set_at(conn, &user.id).await, Some(12));
        // Set again within the same millisecond, or with a clock gone back: still later.
        set_password_hash(conn, &user.id, "again", 12).await.unwrap();
        assert_eq!(set_at(conn, &user.id).await, Some(13));
        set_password_hash(conn, &user.id, "and again", 5).await.unwrap();
        assert_eq!(set_at(conn, &user.id).await, Some(14));
        assert!(find_for_login_by_id(conn, "missing").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn batch_password_writes_create_and_replace_hashes() {
        let (store, users) = store_with_users(&["acme_dee", "acme_eve"]).await;
        let conn = store.connection();
        set_password_hash(conn, &users[0].id, "old", 1).await.unwrap();
        set_password_hashes(conn, &[(users[0].id.as_str(), "new0"), (users[1].id.as_str(), "new1")], 2).await.unwrap();
        assert_eq!(password_hash(conn, &users[0].id).await.unwrap().as_deref(), Some("new0"));
        assert_eq!(password_hash(conn, &users[1].id).await.unwrap().as_deref(), Some("new1"));
        set_password_hashes(conn, &[], 3).await.unwrap();
    }

    #[tokio::test]
    async fn batch_lookups_find_exact_matches_only() {
        let (store, user) = store_with_user("acme_bob").await;
        let conn = store.connection();
        let logins = ["acme_bob".to_owned(), "acme_BOB".to_owned(), "nobody".to_owned()];
        let by_login = find_by_logins(conn, &logins).await.unwrap();
        assert_eq!(by_login.len(), 1);
        assert_eq!(by_login["acme_bob"], user);
        let by_id = find_by_ids(conn, &[user.id.as_str(), "missing"]).await.unwrap();
        assert_eq!(by_id.len(), 1);
        assert_eq!(by_id[&user.id], user);
    }

    #[tokio::test]
    async fn a_successful_login_resets_the_count_of_an_active_user_only() {
        let (store, user) = store_with_user("acme_cy").await;
        let conn = store.connection();
        record_failed_login(conn, &user.id, 5, 2).await.unwrap();
        let updated = record_successful_login(conn, &user.id, 7).await.unwrap().unwrap();
        assert_eq!((updated.failed_logins, updated.last_login_at), (0, Some(7)));
        assert!(record_successful_login(conn, "missing", 8).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_login_is_recorded_at_once_only_while_nothing_it_checked_changed() {
        let (store, user) = store_with_user("acme_di").await;
        let conn = store.connection();
        set_password_hash(conn, &user.id, "verified", 10).await.unwrap();
        record_failed_login(conn, &user.id, 5, 11).await.unwrap();
        let record = |hash: &'static str, set_at: Option<i64>, now: i64| {
            let id = user.id.clone();
            async move { record_login_with_password_unchanged(conn, &id, hash, set_at, now).await.unwrap() }
        };
        let updated = record("verified", Some(10), 12).await.unwrap();
        assert_eq!((updated.failed_logins, updated.last_login_at), (0, Some(12)));
        assert!(replace_password_hash(conn, &user.id, "verified", "rehashed").await.unwrap());
        assert!(record("verified", Some(10), 13).await.is_some(), "a rehash of the same password still counts");
        set_password_hash(conn, &user.id, "changed", 14).await.unwrap();
        assert!(record("verified", Some(10), 15).await.is_none(), "the password changed meanwhile");
        assert!(record("changed", Some(14), 16).await.is_some());
        let deactivate =
            change_status(conn, &user.id, UserStatus::Active, UserStatus::Inactive, StatusReason::Administrative, 17);
        assert!(deactivate.await.unwrap());
        assert!(record("changed", Some(14), 17).await.is_none(), "the account is no longer ACTIVE");
        let reactivate =
            change_status(conn, &user.id, UserStatus::Inactive, UserStatus::Active, StatusReason::Administrative, 17);
        assert!(reactivate.await.unwrap());
        second_factors::assign(
            conn,
            &crate::crypto::data_keys::DataKeys::ephemeral(),
            &user.id,
            b"0123456789abcdef0123",
            17,
        )
        .await
        .unwrap();
        assert!(record("changed", Some(14), 18).await.is_none(), "a second factor asks for a passcode first");
        assert!(
            record_login_with_password_unchanged(conn, "missing", "changed", Some(14), 19).await.unwrap().is_none()
        );
        let row = find_by_id(conn, &user.id).await.unwrap().unwrap();
        assert_eq!(row.last_login_at, Some(16), "a refused record changes nothing");
    }
}
