//! Initial passwords (`--initial-passwords FILE`) for accounts that arrive without a password
//! anyone can log in with: every account of a bulk export (exports carry no password hashes)
//! and single sign-on accounts. Each such user gets a generated password, written to FILE (mode
//! 0600, one `<user id><TAB><password>` line each) before its hash goes into the archive, so a
//! password is never set that the admin does not have. A later run reads FILE back and keeps
//! every password in it: the same user always gets the same password, and new users are added.
//!
//! The hash is argon2id in the PHC string form Conduit v0.10.12 itself stores and checks
//! (`$argon2id$v=19$m=4096,t=3,p=1$<salt>$<hash>`, its own parameters). The salt is derived from
//! the user id and the password, so the same password gives the same hash and a re-run forges
//! the same archive; passwords are 100 random bits, so a salt that is not random costs nothing.
//! Passwords are never logged: only counts and the file's path are printed.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use argon2::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::archive::fsutil;
use crate::error::{Error, Result};
use crate::import::model::User;

/// Conduit v0.10.12's own argon2 parameters (rust-argon2's defaults with Argon2id): memory in
/// KiB, passes, lanes.
const M_COST: u32 = 4096;
const T_COST: u32 = 3;
const P_COST: u32 = 1;

/// Characters of a generated password: lower-case letters and digits without the ones easily
/// misread (`0`/`o`, `1`/`l`): 32, so each random byte gives 5 unbiased bits.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Characters of a password (100 bits), written in groups of four.
const LENGTH: usize = 20;

/// What [`assign`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// Users given a password generated in this run.
    pub new: usize,
    /// Users given the password an earlier run wrote into the file.
    pub kept: usize,
}

/// Who needs an initial password: an active person (not a bot) with no password hash of their
/// own, whose account this import makes (an account the database already has keeps its
/// password).
pub fn needs_one(u: &User, existing: &HashSet<String>) -> bool {
    !u.deactivated && !u.bot && u.password_hash.is_none() && !existing.contains(&u.user_id)
}

/// Gives every user who [`needs_one`] the password `path` lists for them, or a new one (added
/// to `path` before any hash is set), and sets its hash. `earlier` gives the password hash an
/// earlier run forged for a user, if any: a user who had an initial password and is missing
/// from `path` stops it (a new password would not be the one the database has).
pub fn assign(
    path: &Path,
    users: &mut [User],
    existing: &HashSet<String>,
    earlier: impl Fn(&User) -> Result<Option<String>>,
) -> Result<Assigned> {
    let mut known = read(path)?;
    let mut done = Assigned::default();
    let mut added = false;
    for u in users.iter().filter(|u| needs_one(u, existing)) {
        if known.contains_key(&u.user_id) {
            done.kept += 1;
        } else if earlier(u)?.is_some_and(|h| h.starts_with("$argon2")) {
            return Err(Error::Config(format!(
                "{} does not list {}, whose initial password an earlier run into this archive \
                 set: restore the file (a new password would not be the one already written)",
                path.display(),
                u.user_id
            )));
        } else {
            known.insert(u.user_id.clone(), generate()?);
            done.new += 1;
            added = true;
        }
    }
    if added || !path.exists() {
        write(path, &known)?;
    } else {
        ensure_private(path)?;
    }
    for u in users.iter_mut().filter(|u| needs_one(u, existing)) {
        if let Some(password) = known.get(&u.user_id) {
            u.password_hash = Some(hash(&u.user_id, password)?);
        }
    }
    Ok(done)
}

/// The argon2id PHC string of `password` for `user_id` (see the module's note on the salt).
pub fn hash(user_id: &str, password: &str) -> Result<String> {
    let salt = Sha256::new()
        .chain_update(b"transition-matrix initial password\0")
        .chain_update(user_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(password.as_bytes())
        .finalize();
    let params = Params::new(M_COST, T_COST, P_COST, None)
        .map_err(|e| Error::Config(format!("argon2 parameters: {e}")))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = hasher
        .hash_password_with_salt(password.as_bytes(), &salt[..16])
        .map_err(|e| Error::Config(format!("hashing the password of {user_id}: {e}")))?;
    Ok(hash.to_string())
}

/// A new random password, `xxxx-xxxx-xxxx-xxxx-xxxx`.
fn generate() -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; LENGTH]);
    crate::import::forge::getrandom(&mut bytes[..])?;
    let mut out = Zeroizing::new(String::with_capacity(LENGTH + LENGTH / 4));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(out)
}

/// The file's passwords by user id (none when it does not exist). Lines: `<user id><TAB>
/// <password>`; blank lines and `#` comments are skipped. A malformed line is named by its
/// number only: its text may be a password.
fn read(path: &Path) -> Result<BTreeMap<String, Zeroizing<String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io("cannot read", path, e)),
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| Error::Malformed {
            what: format!("{} line {}", path.display(), n + 1),
            reason: reason.to_owned(),
        };
        let (user, password) = line
            .split_once('\t')
            .ok_or_else(|| bad("expected <user id><TAB><password>"))?;
        if !user.starts_with('@') || !user.contains(':') || password.is_empty() {
            return Err(bad("expected <user id><TAB><password>"));
        }
        if out
            .insert(user.to_owned(), Zeroizing::new(password.to_owned()))
            .is_some()
        {
            return Err(bad("a user listed twice"));
        }
    }
    Ok(out)
}

/// Writes the file (mode 0600, atomically: a run that stops never leaves half of it).
fn write(path: &Path, passwords: &BTreeMap<String, Zeroizing<String>>) -> Result<()> {
    let mut text = Zeroizing::new(String::from(
        "# Initial passwords of the imported accounts that had none (transition-matrix).\n\
         # <user id><TAB><password>. Hand each to its user; they can change it once logged in.\n",
    ));
    for (user, password) in passwords {
        text.push_str(user);
        text.push('\t');
        text.push_str(password);
        text.push('\n');
    }
    fsutil::write_atomic(path, text.as_bytes(), true)
}

/// An existing file that others may read is made private.
fn ensure_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| Error::io("cannot read", path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io("cannot set mode 0600 on", path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHash, PasswordVerifier};

    fn user(id: &str, hash: Option<&str>) -> User {
        User {
            key: id.into(),
            user_id: format!("@{id}:s.test"),
            password_hash: hash.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn only_accounts_without_a_password_get_one_and_a_rerun_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwords.tsv");
        let mut users = vec![
            user("sso", None),
            user("bcrypt", Some("$2a$04$abc")),
            User {
                deactivated: true,
                ..user("gone", None)
            },
            User {
                bot: true,
                ..user("bot", None)
            },
            user("there", None),
        ];
        let existing = HashSet::from(["@there:s.test".to_owned()]);
        let done = assign(&path, &mut users, &existing, |_| Ok(None)).unwrap();
        assert_eq!(done, Assigned { new: 1, kept: 0 });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 1, "{text}");
        let (who, password) = lines[0].split_once('\t').unwrap();
        assert_eq!(who, "@sso:s.test");
        assert_eq!(password.len(), 24);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let hash = users[0].password_hash.clone().unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=4096,t=3,p=1$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .expect("the file's password logs in");
        assert!(Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
        assert_eq!(users[1].password_hash.as_deref(), Some("$2a$04$abc"));
        for u in &users[2..] {
            assert!(u.password_hash.is_none(), "{}", u.user_id);
        }

        // A later run (a new user among them) keeps the password and adds one line.
        let mut again = vec![user("sso", None), user("new", None)];
        let done = assign(&path, &mut again, &existing, |_| Ok(None)).unwrap();
        assert_eq!(done, Assigned { new: 1, kept: 1 });
        assert_eq!(again[0].password_hash.as_deref(), Some(hash.as_str()));
        let text2 = std::fs::read_to_string(&path).unwrap();
        assert!(text2.contains(lines[0]), "{text2}");
        assert_eq!(text2.lines().filter(|l| !l.starts_with('#')).count(), 2);

        // The file lost: an account an earlier run gave a password is not given another.
        std::fs::remove_file(&path).unwrap();
        let earlier = |u: &User| -> Result<Option<String>> {
            Ok((u.user_id == "@sso:s.test").then(|| hash.clone()))
        };
        let err = assign(&path, &mut [user("sso", None)], &existing, earlier).unwrap_err();
        assert!(err.to_string().contains("@sso:s.test"), "{err}");
        assert!(!path.exists(), "nothing written");
    }

    #[test]
    fn a_malformed_line_is_named_without_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, "@a:s.test\tgood\nsecret-without-a-tab\n").unwrap();
        let err = assign(&path, &mut [user("a", None)], &HashSet::new(), |_| Ok(None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
