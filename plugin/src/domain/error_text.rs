//! How an error reads, on the terminal and in reports, records and admission answers: its
//! message, then each cause the message does not already say. Errors that print their source
//! (`cannot read x: No such file`) and also chain it would otherwise show the same cause twice.

/// `error: …` and one `  caused by: …` line per cause not already in the line above it.
pub fn error_text(err: &anyhow::Error) -> String {
    format!("error: {}", said(err).join("\n  caused by: "))
}

/// The same on one line, the parts joined by `: ` as `{:#}` would (for a report's or a record's
/// `message`), without the repeats.
pub fn one_line(err: &anyhow::Error) -> String {
    said(err).join(": ")
}

/// The message, then each cause not already in the one before it.
fn said(err: &anyhow::Error) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut last = String::new();
    for cause in err.chain() {
        let cause = words(cause);
        if parts.is_empty() || !last.contains(&cause) {
            parts.push(cause.clone());
        }
        last = cause;
    }
    parts
}

/// One error's own words. The API server's refusals are said as it words them (`services "web"
/// is forbidden: User "dev" cannot get …: Forbidden`): kube's own text for them carries a debug
/// dump of the whole Status after the message.
fn words(err: &(dyn std::error::Error + 'static)) -> String {
    match err.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => status.to_string(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    fn missing() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::NotFound)
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /x: {0}")]
    struct ReadError(#[source] std::io::Error);

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let err = Err::<(), _>(ReadError(missing()))
            .context("cannot load the certificate")
            .unwrap_err();
        assert_eq!(
            error_text(&err),
            "error: cannot load the certificate\n  caused by: cannot read /x: entity not found"
        );
    }

    #[test]
    fn one_line_says_each_cause_once_as_the_terminal_does() {
        let err = Err::<(), _>(ReadError(missing()))
            .context("cannot load the certificate")
            .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "cannot load the certificate: cannot read /x: entity not found: entity not found"
        );
        assert_eq!(
            one_line(&err),
            "cannot load the certificate: cannot read /x: entity not found"
        );
    }

    #[test]
    fn an_api_servers_refusal_is_said_in_its_words_without_the_status_dump() {
        let status = kube::core::Status {
            message: "services \"web\" is forbidden: User \"dev\" cannot get resource".into(),
            reason: "Forbidden".into(),
            code: 403,
            ..Default::default()
        };
        let err = Err::<(), _>(kube::Error::Api(Box::new(status)))
            .context("cannot read Service/web")
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("Status {"),
            "kube's own text: {err:#}"
        );
        assert_eq!(
            one_line(&err),
            "cannot read Service/web: services \"web\" is forbidden: User \"dev\" cannot get resource: Forbidden"
        );
    }

    #[test]
    fn every_new_cause_is_listed() {
        let err = Err::<(), _>(missing())
            .context("cannot read the policy")
            .context("cannot deploy")
            .unwrap_err();
        assert_eq!(
            error_text(&err),
            "error: cannot deploy\n  caused by: cannot read the policy\n  caused by: entity not found"
        );
    }
}
