//! Approvals as the admission webhook admits them: stamped with the identity the API server
//! authenticated, never changed afterwards, never by the person who released what they approve.
//! Pure decisions over the approval's JSON and the request's user.

use hooks_sdk::Approval;

/// What the webhook answers for an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// Admit, with the approval rewritten as stamped (user, groups, `verified: true`).
    Stamped(Approval),
    /// Admit as it is (a deletion: withdrawing an approval is always allowed).
    Unchanged,
    /// Refuse, with the reason the caller sees.
    Refused(String),
}

/// The operation on the approval ConfigMap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// Judges an approval written by `username` (in `groups`); `text` is its `approval.json`.
pub fn attest(
    operation: Operation,
    username: &str,
    groups: &[String],
    text: Option<&str>,
) -> Attested {
    match operation {
        Operation::Delete => return Attested::Unchanged,
        Operation::Update => {
            return Attested::Refused(
                "approvals cannot be changed once recorded; record a new one with `kubectl release approve`".into(),
            );
        }
        Operation::Create => {}
    }
    if username.is_empty() {
        return Attested::Refused("the API server named no user for this request".into());
    }
    let Some(text) = text else {
        return Attested::Refused("the approval has no approval.json".into());
    };
    let mut approval: Approval = match serde_json::from_str(text) {
        Ok(approval) => approval,
        Err(e) => return Attested::Refused(format!("approval.json is not an approval: {e}")),
    };
    if approval.user != username {
        return Attested::Refused(format!(
            "the approval names `{}`, but `{username}` is recording it: an approval is recorded by its approver (kubectl release approve)",
            approval.user.chars().take(256).collect::<String>()
        ));
    }
    if approval.deployer.as_deref() == Some(username) {
        return Attested::Refused(format!(
            "`{username}` released what this approval is for and may not approve it: ask someone else"
        ));
    }
    approval.verified = true;
    approval.groups = groups.to_vec();
    Attested::Stamped(approval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(user: &str, verified: bool, deployer: Option<&str>) -> String {
        serde_json::to_string(&Approval {
            user: user.into(),
            environment: "production".into(),
            commit: "c".repeat(40),
            digests: vec![format!("sha256:{}", "a".repeat(64))],
            approved_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2026-01-02T00:00:00Z".into(),
            verified,
            groups: vec!["forged".into()],
            deployer: deployer.map(Into::into),
        })
        .unwrap()
    }

    #[test]
    fn an_approval_is_stamped_with_who_created_it() {
        let groups = vec!["approvers".to_string()];
        let Attested::Stamped(a) = attest(
            Operation::Create,
            "alice",
            &groups,
            Some(&text("alice", false, Some("dev"))),
        ) else {
            panic!("alice may approve");
        };
        assert!(a.verified);
        assert_eq!(
            a.groups, groups,
            "the API server's groups, not the client's"
        );
    }

    #[test]
    fn a_forged_name_is_refused_whatever_it_claims() {
        let verdict = attest(
            Operation::Create,
            "mallory",
            &[],
            Some(&text("bob", true, None)),
        );
        assert!(
            matches!(verdict, Attested::Refused(m) if m.contains("`bob`") && m.contains("`mallory`"))
        );
    }

    #[test]
    fn the_deployer_may_not_approve_and_nobody_may_edit() {
        assert!(matches!(
            attest(Operation::Create, "dev", &[], Some(&text("dev", false, Some("dev")))),
            Attested::Refused(m) if m.contains("released what this approval is for")
        ));
        assert!(matches!(
            attest(
                Operation::Update,
                "alice",
                &[],
                Some(&text("alice", true, None))
            ),
            Attested::Refused(_)
        ));
        assert_eq!(
            attest(Operation::Delete, "alice", &[], None),
            Attested::Unchanged
        );
        assert!(matches!(
            attest(Operation::Create, "alice", &[], Some("{")),
            Attested::Refused(_)
        ));
    }
}
