//! How an error reaches the terminal: its message, then each cause the message does not
//! already say. Errors that print their source (`cannot read x: No such file`) and also chain
//! it would otherwise show the same cause twice.

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
    let mut parts = vec![err.to_string()];
    let mut last = parts[0].clone();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !last.contains(&cause) {
            parts.push(cause.clone());
        }
        last = cause;
    }
    parts
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
