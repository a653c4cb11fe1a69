//! A plugin run in the background, for tests that act while it works: wait for a state of the
//! cluster or for something it says on stderr, then signal it (SIGTERM, SIGINT, SIGKILL) or
//! disturb its world, and collect how it ended.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::CmdOutput;

pub use nix::sys::signal::Signal;

/// A running command whose stdout and stderr are being read (so it never blocks on a full pipe),
/// killed if dropped before [`Spawned::finish`].
pub struct Spawned {
    line: String,
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    /// Everything written to stderr so far; the sender goes away when stderr closes.
    stderr: watch::Receiver<Vec<u8>>,
    stderr_reader: JoinHandle<()>,
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
        let (stderr, stderr_reader) = read_as_it_comes(child.stderr.take());
        Spawned {
            line,
            child,
            stdout,
            stderr,
            stderr_reader,
        }
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits up to `timeout` until what the process has written to stderr satisfies
    /// `condition` (`what` describes it for the error), and returns that stderr.
    ///
    /// # Errors
    /// When the process closes stderr (it exited) or `timeout` passes first; the error has the
    /// stderr as it was then.
    pub async fn wait_for_stderr(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let mut stderr = self.stderr.clone();
        let waited = tokio::time::timeout(
            timeout,
            stderr.wait_for(|bytes| condition(&String::from_utf8_lossy(bytes))),
        )
        .await;
        let so_far = String::from_utf8_lossy(&self.stderr.borrow()).into_owned();
        match waited {
            Ok(Ok(_)) => Ok(so_far),
            Ok(Err(_)) => Err(anyhow::anyhow!(
                "`{}` exited before its stderr showed {what}; stderr:\n{so_far}",
                self.line
            )),
            Err(_) => Err(anyhow::anyhow!(
                "`{}` had not shown {what} on stderr after {timeout:?}; stderr so far:\n{so_far}",
                self.line
            )),
        }
    }

    /// What the process has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.borrow()).into_owned()
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
                let _ = self.stderr_reader.await;
                panic!(
                    "`{}` still running {timeout:?} later; killed. stderr:\n{}",
                    self.line,
                    String::from_utf8_lossy(&self.stderr.borrow())
                );
            }
        };
        let stdout = self.stdout.await.expect("the stdout reader does not panic");
        self.stderr_reader
            .await
            .expect("the stderr reader does not panic");
        let stderr = String::from_utf8_lossy(&self.stderr.borrow()).into_owned();
        CmdOutput {
            command: self.line,
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
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

/// Reads `pipe` to its end in the background, publishing what has been read so far after every
/// read, so a test can wait for a line while the process still runs.
fn read_as_it_comes<R>(pipe: Option<R>) -> (watch::Receiver<Vec<u8>>, JoinHandle<()>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let (sender, receiver) = watch::channel(Vec::new());
    let reader = tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = vec![0u8; 8192];
        // A read error ends the output early; what was read is still worth showing.
        while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
            sender.send_modify(|bytes| bytes.extend_from_slice(&chunk[..n]));
        }
    });
    (receiver, reader)
}
