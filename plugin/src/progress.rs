//! Progress on stderr: a live display on a terminal, one plain line per change in CI.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress of one release: a line per workload.
#[derive(Clone)]
pub struct Progress {
    live: Option<MultiProgress>,
    /// Last message per line, to print plain lines only on change and to know what is pending.
    state: Arc<Mutex<BTreeMap<String, (String, bool)>>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Live display when stderr is a terminal and neither `CI` nor `NO_COLOR` asks otherwise.
    pub fn new() -> Progress {
        let live = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Progress {
            live: live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            state: Arc::default(),
        }
    }

    /// A line for `label` (a workload).
    pub fn line(&self, label: &str) -> Line {
        let bar = self.live.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            let template = if std::env::var_os("NO_COLOR").is_some() {
                "{spinner} {prefix} {msg}"
            } else {
                "{spinner:.cyan} {prefix:.bold} {msg}"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        self.state
            .lock()
            .unwrap()
            .insert(label.to_string(), (String::new(), false));
        Line {
            label: label.to_string(),
            bar,
            state: self.state.clone(),
        }
    }

    /// Labels whose line has not finished, for a timeout message.
    pub fn unfinished(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (_, done))| !done)
            .map(|(label, (msg, _))| {
                if msg.is_empty() {
                    label.clone()
                } else {
                    format!("{label} ({msg})")
                }
            })
            .collect()
    }

    /// A one-off message (a step of the release), above the live lines.
    pub fn say(&self, message: &str) {
        match &self.live {
            Some(multi) => {
                let _ = multi.println(message);
            }
            None => eprintln!("{message}"),
        }
    }
}

pub struct Line {
    label: String,
    bar: Option<ProgressBar>,
    state: Arc<Mutex<BTreeMap<String, (String, bool)>>>,
}

impl Line {
    pub fn set(&self, message: &str) {
        let changed = {
            let mut state = self.state.lock().unwrap();
            let entry = state.entry(self.label.clone()).or_default();
            let changed = entry.0 != message;
            entry.0 = message.to_string();
            changed
        };
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None if changed => eprintln!("{}: {message}", self.label),
            None => {}
        }
    }

    pub fn finish(&self, message: &str) {
        self.state
            .lock()
            .unwrap()
            .insert(self.label.clone(), (message.to_string(), true));
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.to_string()),
            None => eprintln!("{}: {message}", self.label),
        }
    }
}
