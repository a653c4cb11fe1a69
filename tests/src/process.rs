//! A plugin run in the background, for tests that act while it works: wait for a state of the
//! cluster, then signal it (SIGTERM, SIGINT, SIGKILL) and collect how it ended.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::CmdOutput;

pub use nix::sys::signal::Signal;

/// A running command whose stdout and stderr are being read (so it never blocks on a full pipe),
/// killed if dropped before [`Spawned::finish`].
pub struct Spawned {
    line: String,
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Spawned {
    /// Starts `command` with stdin closed and its output captured.
    pub fn spawn(command: &mut Command) -> Spawned {
        let std = command.as_std();
        let line = std::iter::once(std.get_program())
            .chain(std.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        Spawned {
            line,
            child,
            stdout,
            stderr,
        }
    }

    /// Sends `signal` to the process. Panics when it has already been reaped.
    pub fn signal(&self, signal: Signal) {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("`{}` has already exited", self.line));
        let pid = Pid::from_raw(i32::try_from(pid).expect("a pid fits in i32"));
        kill(pid, signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to `{}`: {e}", self.line));
    }

    /// Waits up to `timeout` for the process to exit, and returns what it printed and how it
    /// ended. Panics (killing it) when it is still running then.
    pub async fn finish(mut self, timeout: Duration) -> CmdOutput {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.unwrap_or_else(|e| panic!("cannot wait for `{}`: {e}", self.line)),
            Err(_) => {
                let _ = self.child.kill().await;
                let stderr = self.stderr.await.unwrap_or_default();
                panic!(
                    "`{}` still running {timeout:?} later; killed. stderr:\n{}",
                    self.line,
                    String::from_utf8_lossy(&stderr)
                );
            }
        };
        let stdout = self.stdout.await.expect("the stdout reader does not panic");
        let stderr = self.stderr.await.expect("the stderr reader does not panic");
        CmdOutput {
            command: self.line,
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

fn read_all<R>(pipe: Option<R>) -> JoinHandle<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the output early; what was read is still worth showing.
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        bytes
    })
}
