//! [`TenantId`]: the validated name of a tenant.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The name of a tenant, validated once at construction.
///
/// The rule: 1 to [`TenantId::MAX_LEN`] ASCII characters, the first a lowercase letter `a-z`,
/// the rest lowercase letters, digits or `_`. Tenant ids become part of database, role and file
/// names, so this rule keeps them portable across backends and free of anything that would need
/// escaping; SQL that uses them still quotes every identifier. The configured prefixes and the
/// backend may lower the length limit further (see [`crate::Naming`]); Tenora refuses such ids
/// rather than truncate them, so two ids never map to one database.
///
/// ```
/// use tenora::TenantId;
/// let id: TenantId = "acme_2024".parse()?;
/// assert_eq!(id.as_str(), "acme_2024");
/// assert!(TenantId::new("Acme").is_err());
/// assert!(TenantId::new("a\"; DROP DATABASE x; --").is_err());
/// # Ok::<(), tenora::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Box<str>);

impl TenantId {
    /// Longest tenant id accepted before prefixes are considered: PostgreSQL's identifier limit.
    pub const MAX_LEN: usize = 63;

    /// The rule, as shown in error messages.
    pub const RULE: &'static str = "a tenant id is 1 to 63 ASCII characters: a lowercase \
        letter a-z first, then lowercase letters, digits or `_`";

    /// Validates `id` and wraps it.
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        match Self::problem(id) {
            None => Ok(TenantId(id.into())),
            Some(problem) => Err(Error::InvalidTenantId {
                id: id.to_owned(),
                reason: format!("{problem}; {}", Self::RULE),
            }),
        }
    }

    fn problem(id: &str) -> Option<String> {
        let Some(first) = id.chars().next() else {
            return Some("it is empty".to_owned());
        };
        if id.len() > Self::MAX_LEN {
            return Some(format!("it is {} bytes long", id.len()));
        }
        if !first.is_ascii_lowercase() {
            return Some(format!("it starts with {first:?}"));
        }
        id.chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
            .map(|c| format!("it contains {c:?}"))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({:?})", &*self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TenantId::new(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        TenantId::new(s)
    }
}

impl TryFrom<&str> for TenantId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        TenantId::new(s)
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["a", "acme", "acme_2024", "a_b_c", &"a".repeat(63)] {
            assert_eq!(TenantId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_invalid_ids_with_the_rule() {
        let long = "a".repeat(64);
        for bad in [
            "",
            "Acme",
            "1acme",
            "_acme",
            "ac me",
            "acme-co",
            "o'neil",
            "a\"; DROP DATABASE x; --",
            "caf\u{e9}",
            "\u{0430}cme",
            "acme\0",
            long.as_str(),
        ] {
            let err = TenantId::new(bad).unwrap_err().to_string();
            assert!(
                err.contains("a lowercase letter a-z first"),
                "{bad:?}: {err}"
            );
        }
    }
}
