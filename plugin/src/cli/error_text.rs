//! How an error reaches the terminal: its message, then each cause the message does not
//! already say. Errors that print their source (`cannot read x: No such file`) and also chain
//! it would otherwise show the same cause twice.

/// `error: …` and one `  caused by: …` line per cause not already in the line above it.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    let mut said = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !said.contains(&cause) {
            out.push_str("\n  caused by: ");
            out.push_str(&cause);
        }
        said = cause;
    }
    out
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
