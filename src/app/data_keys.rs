//! The data keys a process seals secrets at rest with: read from a folder
//! outside the database (a Kubernetes Secret volume, or `data-keys/` beside
//! the SQLite file, where the first start makes one), checked against the
//! keys the rows name, and the rotation that re-seals rows under the current key.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::{
    config::Config,
    crypto::data_keys::{DataKeyError, DataKeys, KEY_LEN, decode_key, generate_key_text, valid_key_id},
    domain::Error,
    store::{Store, outbox, second_factors, secrets},
};

/// The id of the key a first start makes when none is configured.
const FIRST_KEY_ID: &str = "local-1";

/// The data keys for `config`, refusing to start when a row names a key that
/// is not configured (a lost key file must not pass unnoticed).
pub async fn load(store: &Store, config: &Config) -> Result<DataKeys, Error> {
    let in_use: Vec<String> = secrets::rows_per_key(store.connection()).await?.into_keys().flatten().collect();
    let settings = &config.data_keys;
    let (dir, may_create) = match &settings.dir {
        Some(dir) => (dir.clone(), false),
        None if is_in_memory(&config.database_url) => return Ok(DataKeys::ephemeral()),
        None => {
            if !config.database_url.starts_with("sqlite:") {
                tracing::warn!(
                    "data_keys.dir is unset: the data keys are kept in ./data/data-keys, which every replica \
                     must share; configure data_keys.dir (see docs/operations.md)"
                );
            }
            (default_dir(&config.database_url), true)
        }
    };
    let mut keys = read_dir(&dir)?;
    if keys.is_empty() && may_create && in_use.is_empty() {
        create_first_key(&dir)?;
        keys = read_dir(&dir)?;
    }
    if keys.is_empty() {
        return Err(missing(&in_use, &dir).unwrap_or_else(|| {
            Error::invalid("data_keys.dir", format!("{} holds no key file (see docs/operations.md)", dir.display()))
        }));
    }
    let current = match &settings.current {
        Some(current) => current.clone(),
        None if keys.len() == 1 => keys.keys().next().cloned().unwrap_or_default(),
        None => {
            let ids: Vec<&str> = keys.keys().map(String::as_str).collect();
            return Err(Error::invalid(
                "data_keys.current",
                format!("must name the key that encrypts: {} holds {}", dir.display(), ids.join(", ")),
            ));
        }
    };
    let unknown: Vec<String> = in_use.iter().filter(|id| !keys.contains_key(*id)).cloned().collect();
    if let Some(error) = missing(&unknown, &dir) {
        return Err(error);
    }
    let keys = DataKeys::new(&current, keys.into_iter().collect()).map_err(|_| {
        Error::invalid("data_keys.current", format!("names key `{current}`, which {} does not hold", dir.display()))
    })?;
    // Same id, other bytes (a key made anew, another machine's folder): refuse
    // now rather than fail each row later.
    for id in &in_use {
        if let Some((aad, sealed)) = secrets::sample_under(store.connection(), id).await?
            && keys.open(id, &aad, &sealed).is_err()
        {
            return Err(Error::invalid(
                "data_keys",
                format!(
                    "the key file `{id}` in {} is not the data key that encrypted the rows: restore the right one",
                    dir.display()
                ),
            ));
        }
    }
    Ok(keys)
}

fn missing(ids: &[String], dir: &Path) -> Option<Error> {
    let first = ids.first()?;
    Some(Error::invalid(
        "data_keys",
        format!(
            "encrypted rows use data key `{first}`, which is not configured: put its key file `{first}` in {} \
             (restore it from the key backup) before starting",
            dir.display()
        ),
    ))
}

fn is_in_memory(database_url: &str) -> bool {
    database_url.starts_with("sqlite:") && (database_url.contains(":memory:") || database_url.contains("mode=memory"))
}

/// `data-keys/` beside the SQLite file: the keys are backed up with the data
/// directory but never inside the database. `./data/data-keys` otherwise.
fn default_dir(database_url: &str) -> PathBuf {
    let file = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"));
    let parent = file
        .map(|file| Path::new(file.split('?').next().unwrap_or_default()))
        .and_then(Path::parent)
        .filter(|parent| !parent.as_os_str().is_empty());
    parent.map_or_else(|| PathBuf::from("./data"), Path::to_path_buf).join("data-keys")
}

/// The key files of `dir`, by id. Dot files are skipped: a Kubernetes Secret
/// volume keeps its bookkeeping (`..data`) there.
fn read_dir(dir: &Path) -> Result<BTreeMap<String, [u8; KEY_LEN]>, Error> {
    let mut keys = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(error) => {
            return Err(Error::invalid("data_keys.dir", format!("cannot be read ({}): {error}", dir.display())));
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        if !valid_key_id(&name) {
            tracing::warn!(file = %path.display(), "ignored: a data key file's name is its key id (letters, digits, '-', '_')");
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::invalid("data_keys.dir", format!("cannot read {}: {e}", path.display())))?;
        let key = decode_key(&text).ok_or_else(|| {
            Error::invalid("data_keys.dir", format!("{} must hold base64 of {KEY_LEN} bytes", path.display()))
        })?;
        warn_if_readable_by_others(&path);
        keys.insert(name, key);
    }
    Ok(keys)
}

/// Writes the first key whole or not at all: several processes starting at
/// once on a fresh data directory all end up with the same key.
fn create_first_key(dir: &Path) -> Result<(), Error> {
    let failed =
        |e: std::io::Error| Error::invalid("data_keys.dir", format!("cannot create a key in {}: {e}", dir.display()));
    create_private_dir(dir).map_err(failed)?;
    let staging = dir.join(format!(".{FIRST_KEY_ID}.{}", crate::crypto::random::string_from(b"abcdefghij", 12)));
    write_private(&staging, &generate_key_text()).map_err(failed)?;
    let linked = std::fs::hard_link(&staging, dir.join(FIRST_KEY_ID));
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), key_id = FIRST_KEY_ID, "created a data key: back it up apart from the database");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(failed(error)),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A Secret volume's files are symlinks to 0644 files unless defaultMode says otherwise.
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o007 != 0
        {
            tracing::warn!(path = %path.display(), "a data key file can be read by every user: make it 0600 (or 0640)");
        }
    }
}

/// What a rotation did, and which keys rows still use.
#[derive(Debug, Default)]
pub struct Rotation {
    pub resealed: u64,
    /// Rows per key once done (None: rows in clear).
    pub rows_per_key: BTreeMap<Option<String>, u64>,
}

/// Re-seals every TOTP secret and email body under the current key, `batch`
/// rows at a time, each row with one conditional UPDATE: replicas keep
/// serving, and a row they change meanwhile keeps their change.
pub async fn rotate(store: &Store, keys: &DataKeys, batch: u64) -> Result<Rotation, Error> {
    let conn = store.connection();
    let current = keys.current_id();
    let unopenable = |e: DataKeyError| Error::invalid("data_keys", e.to_string());
    let mut rotation = Rotation::default();
    loop {
        let factors = secrets::factors_not_under(conn, current, batch).await?;
        for factor in &factors {
            let clear = second_factors::totp_secret(keys, factor).map_err(unopenable)?;
            let sealed = keys.seal(&secrets::totp_aad(&factor.user_id), &clear);
            rotation.resealed += u64::from(secrets::reseal_factor(conn, factor, &sealed).await?);
        }
        if (factors.len() as u64) < batch {
            break;
        }
    }
    loop {
        let emails = secrets::emails_not_under(conn, current, batch).await?;
        for email in &emails {
            let clear = outbox::opened(keys, email).map_err(unopenable)?;
            let text = keys.seal_text(&secrets::email_aad(&email.id, "body_text"), &clear.body_text);
            let html = keys.seal_text(&secrets::email_aad(&email.id, "body_html"), &clear.body_html);
            rotation.resealed += u64::from(secrets::reseal_email(conn, email, current, &text, &html).await?);
        }
        if (emails.len() as u64) < batch {
            break;
        }
    }
    rotation.rows_per_key = secrets::rows_per_key(conn).await?;
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_folder_sits_beside_the_sqlite_file() {
        assert_eq!(default_dir("sqlite:///var/lib/identity/id.db?mode=rwc"), Path::new("/var/lib/identity/data-keys"));
        assert_eq!(default_dir("sqlite://./data/identity.db"), Path::new("./data/data-keys"));
        assert_eq!(default_dir("postgres://db/identity"), Path::new("./data/data-keys"));
        assert!(is_in_memory("sqlite::memory:") && !is_in_memory("sqlite://./data/identity.db"));
    }

    #[test]
    fn the_first_key_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("data-keys");
        create_first_key(&keys_dir).unwrap();
        let first = read_dir(&keys_dir).unwrap();
        create_first_key(&keys_dir).unwrap();
        assert_eq!(read_dir(&keys_dir).unwrap(), first, "a second start keeps the first key");
        assert_eq!(first.keys().collect::<Vec<_>>(), [FIRST_KEY_ID]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys_dir.join(FIRST_KEY_ID)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
