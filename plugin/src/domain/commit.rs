//! A full commit hash: the name of a commit's image, checked wherever it comes from.

use std::fmt;

use super::Failure;

/// A full commit hash, 40 lower-case hex digits; the tag of the commit's image.
///
/// Deserialising checks it too: a hand-edited record naming `"commit": "abc"` is refused where
/// it is read, so nothing later can slice a short or non-ASCII string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CommitSha(String);

impl CommitSha {
    /// Accepts exactly 40 hex digits (any case), for `--commit` in CI without a checkout.
    pub fn parse_full(text: &str) -> Result<CommitSha, Failure> {
        Self::check(text).ok_or_else(|| {
            Failure::invalid(format!(
                "`{text}` is not a full commit hash: --commit takes all 40 hex digits \
                 (run `git rev-parse {text}` where the repository is checked out)"
            ))
        })
    }

    fn check(text: &str) -> Option<CommitSha> {
        let t = text.trim();
        (t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| CommitSha(t.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 7 digits, for tables.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for CommitSha {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CommitSha::check(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is not a full 40-hex commit hash",
                text.chars().take(64).collect::<String>()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sha_is_normalised() {
        let sha = CommitSha::parse_full("3F2A9C1E0B7D4A5F8E6C2B1A0D9F8E7C6B5A4D3E").unwrap();
        assert_eq!(sha.as_str(), "3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e");
        assert_eq!(sha.short(), "3f2a9c1");
    }

    #[test]
    fn short_sha_is_refused_for_commit_flag() {
        let err = CommitSha::parse_full("3f2a9c1").unwrap_err();
        assert!(
            err.message.contains("not a full commit hash"),
            "{}",
            err.message
        );
    }

    #[test]
    fn deserialising_refuses_what_parsing_refuses() {
        let ok: CommitSha =
            serde_json::from_str("\"3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e\"").unwrap();
        assert_eq!(ok.short(), "3f2a9c1");
        for bad in [
            "\"abc\"",
            "\"é3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3\"",
            "7",
        ] {
            let err = serde_json::from_str::<CommitSha>(bad)
                .unwrap_err()
                .to_string();
            assert!(!err.is_empty(), "{bad} must be refused");
        }
    }
}
