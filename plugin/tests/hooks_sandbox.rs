//! The sandbox's limits and isolation, proven with tiny inline WAT modules rather than binaries
//! in git: each module does one hostile or broken thing and the test checks the hook error.
//!
//! Timing assertions are deliberately loose (a multiple of the limit): the machine running the
//! tests may be busy, and what matters is that a runaway hook is stopped, not to the millisecond.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hooks_sdk::guest::Command;
use hooks_sdk::{HookRequest, Phase};
use kubectl_release::config::{FailurePolicy, HookConfig, HookLimits};
use kubectl_release::hooks::{HookEngine, HookError, Outcome, run_phase, select};
use sha2::{Digest, Sha256};

/// A module that writes `stdout` and `stderr`, then exits with `exit` (or returns from `_start`).
fn writer(stdout: &str, stderr: &str, exit: Option<i32>) -> String {
    let exit = exit.map_or_else(String::new, |code| {
        format!("(call $proc_exit (i32.const {code}))")
    });
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "{out}")
          (data (i32.const 8192) "{err}")
          (func $write (param $fd i32) (param $ptr i32) (param $len i32)
            (i32.store (i32.const 16384) (local.get $ptr))
            (i32.store (i32.const 16388) (local.get $len))
            (drop (call $fd_write (local.get $fd) (i32.const 16384) (i32.const 1) (i32.const 16392))))
          (func (export "_start")
            (call $write (i32.const 1) (i32.const 0) (i32.const {out_len}))
            (call $write (i32.const 2) (i32.const 8192) (i32.const {err_len}))
            {exit}))"#,
        out = wat_string(stdout),
        err = wat_string(stderr),
        out_len = stdout.len(),
        err_len = stderr.len(),
    )
}

/// Copies stdin to stdout: proves the request arrives, and that echoing it is no verdict.
const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $n i32)
    (block $done
      (loop $next
        (i32.store (i32.const 0) (i32.const 8192))
        (i32.store (i32.const 4) (i32.const 4096))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
        (br $next)))))"#;

/// Writes its NUL-separated argv to stdout.
const ARGV: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $args (i32.const 64) (i32.const 1024)))
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (i32.load (i32.const 4)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))))"#;

const ENDLESS_LOOP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))"#;

/// A module that sleeps in `poll_oneoff` on the monotonic clock for `nanos` (relative, or until
/// that instant of the guest's clock when `absolute`), `times` times, then answers `allowed`.
/// Epoch interruption cannot reach a guest inside a host call: only the poll guard can.
fn sleeper(nanos: u64, absolute: bool, times: u32) -> String {
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 512) "{{\"allowed\":true}}")
          (func (export "_start")
            (local $left i32)
            (local.set $left (i32.const {times}))
            (i64.store (i32.const 0) (i64.const 1))               ;; userdata
            (i32.store8 (i32.const 8) (i32.const 0))              ;; tag: clock
            (i32.store (i32.const 16) (i32.const 1))              ;; monotonic clock
            (i64.store (i32.const 24) (i64.const {nanos}))        ;; timeout
            (i64.store (i32.const 32) (i64.const 0))              ;; precision
            (i32.store16 (i32.const 40) (i32.const {flags}))      ;; 1: absolute
            (loop $again
              (if (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256))
                (then unreachable))
              (local.set $left (i32.sub (local.get $left) (i32.const 1)))
              (br_if $again (local.get $left)))
            (i32.store (i32.const 600) (i32.const 512))
            (i32.store (i32.const 604) (i32.const 16))
            (drop (call $fd_write (i32.const 1) (i32.const 600) (i32.const 1) (i32.const 608)))))"#,
        flags = u32::from(absolute),
    )
}

/// Polls a 60 s clock together with stdin, which is ready, and expects one stdin event back
/// at once; then polls fd 7, which does not exist, and expects EBADF; then answers `allowed`.
/// Any other result traps.
const POLL_DESCRIPTORS: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\"allowed\":true}")
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 11))              ;; clock: userdata 11
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 60000000000))
    (i64.store (i32.const 48) (i64.const 22))             ;; stdin: userdata 22
    (i32.store8 (i32.const 56) (i32.const 1))             ;; fd_read
    (i32.store (i32.const 64) (i32.const 0))              ;; fd 0
    (if (call $poll (i32.const 0) (i32.const 256) (i32.const 2) (i32.const 512))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 512)) (i32.const 1)) (then unreachable))
    (if (i64.ne (i64.load (i32.const 256)) (i64.const 22)) (then unreachable))
    (if (i32.ne (i32.load8_u (i32.const 266)) (i32.const 1)) (then unreachable))
    (i32.store (i32.const 64) (i32.const 7))              ;; fd 7: none
    (if (i32.ne (call $poll (i32.const 48) (i32.const 256) (i32.const 1) (i32.const 512))
                (i32.const 8))
      (then unreachable))
    (i32.store (i32.const 600) (i32.const 1024))
    (i32.store (i32.const 604) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 600) (i32.const 1) (i32.const 608)))))"#;

const MINUTE_NANOS: u64 = 60_000_000_000;

/// Grows memory by 1000 pages (62.5 MiB) and traps if refused, as Rust's allocator does.
const GROW: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then unreachable))))"#;

/// Asks for 300 pages (18.75 MiB) up front.
const BIG_INITIAL_MEMORY: &str =
    r#"(module (memory (export "memory") 300) (func (export "_start")))"#;

/// Writes 4 KiB blocks to stdout forever, ignoring errors.
const FLOOD: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 4096))
    (loop $more
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))
      (br $more))))"#;

/// Tries to open /etc/passwd through fd 3 (the first preopen, if there were one) and exits with
/// the errno.
const OPEN_FILE: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "/etc/passwd")
  (func (export "_start")
    (call $proc_exit
      ;; rights: fd_read (bit 1) only
      (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 11) (i32.const 0)
                  (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64)))))"#;

/// Exits with 42 + the number of environment variables and of preopens it sees.
const ENVIRONMENT: &str = r#"(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $preopen i32)
    (drop (call $env_sizes (i32.const 0) (i32.const 4)))
    ;; fd_prestat_get(3) returns 0 only if fd 3 is a preopened directory.
    (local.set $preopen (i32.eqz (call $prestat (i32.const 3) (i32.const 16))))
    (call $proc_exit (i32.add (i32.const 42) (i32.add (i32.load (i32.const 0)) (local.get $preopen))))))"#;

fn wat_string(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' => format!("\\{}", b as char),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\{b:02x}"),
        })
        .collect()
}

/// A temporary directory for modules and the cache, and an engine caching there.
struct Fixture {
    dir: tempfile::TempDir,
    engine: HookEngine,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let engine = HookEngine::new(Some(dir.path().join("cache"))).unwrap();
        Fixture { dir, engine }
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Writes the module and returns a config pinning it.
    fn hook(&self, name: &str, wat: &str, limits: HookLimits) -> HookConfig {
        let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = self.dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, &bytes).unwrap();
        HookConfig {
            name: name.to_string(),
            module: path,
            sha256: hex::encode(Sha256::digest(&bytes)),
            phases: vec![Phase::PreDeploy],
            environments: None,
            failure_policy: FailurePolicy::Fail,
            needs: Vec::new(),
            limits,
            settings: serde_json::json!({}),
        }
    }

    /// Loads and runs `check` once.
    fn check(
        &self,
        name: &str,
        wat: &str,
        limits: HookLimits,
    ) -> Result<hooks_sdk::HookResponse, HookError> {
        let hook = self
            .engine
            .load(&self.hook(name, wat, limits))
            .unwrap_or_else(|e| panic!("{e}"));
        hook.check(&HookRequest::default())
    }
}

fn limits() -> HookLimits {
    HookLimits::default()
}

#[test]
fn a_valid_response_is_a_verdict() {
    let fx = Fixture::new();
    let out = r#"{"allowed":false,"message":"no","violations":[{"message":"v"}],"warnings":["w"]}"#;
    let response = fx
        .check("verdict", &writer(out, "a log line\n", None), limits())
        .unwrap();
    assert!(!response.allowed);
    assert_eq!(response.message.as_deref(), Some("no"));
    assert_eq!((response.violations.len(), response.warnings.len()), (1, 1));
}

#[test]
fn proc_exit_zero_with_a_response_is_a_verdict() {
    let fx = Fixture::new();
    let response = fx
        .check(
            "exit0",
            &writer(r#"{"allowed":true}"#, "", Some(0)),
            limits(),
        )
        .unwrap();
    assert!(response.allowed);
}

#[test]
fn an_endless_loop_stops_close_to_its_deadline() {
    let fx = Fixture::new();
    let limit = Duration::from_millis(200);
    let started = Instant::now();
    let err = fx
        .check(
            "loop",
            ENDLESS_LOOP,
            HookLimits {
                timeout: limit,
                ..limits()
            },
        )
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, HookError::Timeout { limit: l, .. } if l == limit),
        "{err}"
    );
    assert!(elapsed < limit * 5, "stopped only after {elapsed:?}");
    assert!(err.to_string().contains("200ms"), "{err}");
}

#[test]
fn a_sleep_past_the_timeout_is_stopped_at_once() {
    let fx = Fixture::new();
    let limit = Duration::from_millis(500);
    for (name, absolute) in [("sleep-relative", false), ("sleep-until", true)] {
        let started = Instant::now();
        let err = fx
            .check(
                name,
                &sleeper(MINUTE_NANOS, absolute, 1),
                HookLimits {
                    timeout: limit,
                    ..limits()
                },
            )
            .unwrap_err();
        assert!(matches!(err, HookError::Timeout { .. }), "{name}: {err}");
        // Refused before sleeping: not the minute asked for, not even the timeout.
        assert!(
            started.elapsed() < limit,
            "{name}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_sleep_within_the_timeout_is_slept() {
    let fx = Fixture::new();
    let nap = Duration::from_millis(50);
    let started = Instant::now();
    let verdict = fx
        .check("nap", &sleeper(nap.as_nanos() as u64, false, 1), limits())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(verdict.allowed);
    assert!(started.elapsed() >= nap, "took {:?}", started.elapsed());
}

#[test]
fn a_poll_with_a_ready_descriptor_returns_at_once() {
    let fx = Fixture::new();
    let started = Instant::now();
    let verdict = fx
        .check("poll-fds", POLL_DESCRIPTORS, limits())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(verdict.allowed);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn short_sleeps_adding_up_past_the_timeout_stop_near_it() {
    let fx = Fixture::new();
    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let err = fx
        .check(
            "naps",
            &sleeper(40_000_000, false, 1000),
            HookLimits {
                timeout: limit,
                ..limits()
            },
        )
        .unwrap_err();
    assert!(matches!(err, HookError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < limit * 3,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn more_runs_at_once_than_the_pool_has_slots_wait_for_one() {
    let fx = Fixture::new();
    // Each run holds its slot for 20 ms; 100 of them at once outnumber the pool's slots.
    let hook = fx
        .engine
        .load(&fx.hook("nap", &sleeper(20_000_000, false, 1), limits()))
        .unwrap();
    let runs: Vec<_> = (0..100)
        .map(|_| {
            let hook = hook.clone();
            std::thread::spawn(move || hook.check(&HookRequest::default()))
        })
        .collect();
    for run in runs {
        let verdict = run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(verdict.allowed);
    }
}

#[test]
fn memory_grow_past_the_cap_fails() {
    let fx = Fixture::new();
    let cap = HookLimits {
        memory_bytes: 16 << 20,
        ..limits()
    };
    let err = fx.check("grow", GROW, cap).unwrap_err();
    assert!(
        matches!(err, HookError::MemoryLimit { limit, .. } if limit == 16 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("16 MiB"), "{err}");

    let err = fx.check("big", BIG_INITIAL_MEMORY, cap).unwrap_err();
    assert!(matches!(err, HookError::MemoryLimit { .. }), "{err}");

    // The same module within a larger cap grows fine (and then says nothing: no verdict).
    let err = fx
        .check(
            "grow-ok",
            GROW,
            HookLimits {
                memory_bytes: 128 << 20,
                ..limits()
            },
        )
        .unwrap_err();
    assert!(matches!(err, HookError::InvalidResponse { .. }), "{err}");
}

#[test]
fn an_output_flood_is_cut_off() {
    let fx = Fixture::new();
    let small = HookLimits {
        max_output_bytes: 64 << 10,
        timeout: Duration::from_secs(10),
        ..limits()
    };
    let started = Instant::now();
    let err = fx.check("flood", FLOOD, small).unwrap_err();
    assert!(
        matches!(err, HookError::OutputTooLarge { limit, .. } if limit == 64 << 10),
        "{err}"
    );
    // Stopped at the next epoch tick after the cap, not at the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_response_larger_than_the_limit_is_refused_even_if_the_hook_exits_0() {
    let fx = Fixture::new();
    let long = format!(r#"{{"allowed":true,"message":"{}"}}"#, "x".repeat(300));
    let err = fx
        .check(
            "long",
            &writer(&long, "", None),
            HookLimits {
                max_output_bytes: 100,
                ..limits()
            },
        )
        .unwrap_err();
    assert!(matches!(err, HookError::OutputTooLarge { .. }), "{err}");
}

#[test]
fn a_response_of_exactly_the_limit_is_accepted() {
    let fx = Fixture::new();
    let response = r#"{"allowed":true}"#;
    let exact = HookLimits {
        max_output_bytes: response.len() as u64,
        ..limits()
    };
    assert!(
        fx.check("exact", &writer(response, "", None), exact)
            .unwrap()
            .allowed
    );
    let one_less = HookLimits {
        max_output_bytes: response.len() as u64 - 1,
        ..limits()
    };
    let err = fx
        .check("over", &writer(response, "", None), one_less)
        .unwrap_err();
    assert!(matches!(err, HookError::OutputTooLarge { .. }), "{err}");
}

#[test]
fn no_file_can_be_opened() {
    let fx = Fixture::new();
    let err = fx.check("open", OPEN_FILE, limits()).unwrap_err();
    // errno 8 is EBADF: fd 3 does not exist, because nothing is preopened.
    assert!(
        matches!(err, HookError::NonZeroExit { code: 8, .. }),
        "{err}"
    );
}

#[test]
fn no_environment_variables_and_no_preopens() {
    let fx = Fixture::new();
    let err = fx.check("env", ENVIRONMENT, limits()).unwrap_err();
    assert!(
        matches!(err, HookError::NonZeroExit { code: 42, .. }),
        "expected 0 variables and 0 preopens: {err}"
    );
}

#[test]
fn argv_is_fixed_per_command() {
    let fx = Fixture::new();
    let hook = fx.engine.load(&fx.hook("argv", ARGV, limits())).unwrap();
    for (command, expected) in [
        (Command::Check, "hook\0check\0"),
        (Command::ValidateSettings, "hook\0validate-settings\0"),
    ] {
        let err = hook.evaluate(command, &HookRequest::default()).unwrap_err();
        assert!(
            matches!(&err, HookError::InvalidResponse { excerpt, .. } if excerpt == expected),
            "{err}"
        );
    }
}

#[test]
fn the_request_arrives_on_stdin_and_echoing_it_is_not_a_verdict() {
    let fx = Fixture::new();
    let err = fx.check("echo", ECHO, limits()).unwrap_err();
    let HookError::InvalidResponse {
        excerpt, reason, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(
        excerpt.starts_with(r#"{"apiVersion":"kubectl-release.io/hooks/v1""#),
        "{excerpt}"
    );
    assert!(reason.contains("allowed"), "{reason}");
}

#[test]
fn non_json_output_is_a_hook_error() {
    let fx = Fixture::new();
    let err = fx
        .check("text", &writer("all good!", "", None), limits())
        .unwrap_err();
    assert!(
        matches!(&err, HookError::InvalidResponse { excerpt, .. } if excerpt == "all good!"),
        "{err}"
    );
    let err = fx
        .check("silent", &writer("", "", None), limits())
        .unwrap_err();
    assert!(err.to_string().contains("nothing"), "{err}");
}

#[test]
fn a_non_zero_exit_is_a_hook_error_with_the_last_log_lines() {
    let fx = Fixture::new();
    let err = fx
        .check(
            "exit3",
            &writer(
                r#"{"allowed":true}"#,
                "starting\nerror: bad request\n",
                Some(3),
            ),
            limits(),
        )
        .unwrap_err();
    let HookError::NonZeroExit {
        code, stderr_tail, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*code, 3);
    assert_eq!(stderr_tail, "starting\nerror: bad request");
    assert!(err.to_string().contains("error: bad request"), "{err}");
}

#[test]
fn a_host_call_refusing_its_arguments_is_a_trap_naming_the_call() {
    let fx = Fixture::new();
    // All 64 rights bits set is not a valid `rights` value: wasmtime-wasi traps.
    let wat = OPEN_FILE.replace(
        "(i64.const 2) (i64.const 0)",
        "(i64.const -1) (i64.const -1)",
    );
    let err = fx.check("bad-rights", &wat, limits()).unwrap_err();
    assert!(
        matches!(&err, HookError::Trap { message, .. } if message.contains("path_open")),
        "{err}"
    );
}

#[test]
fn a_trap_is_a_hook_error() {
    let fx = Fixture::new();
    let err = fx
        .check(
            "trap",
            r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
            limits(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, HookError::Trap { message, .. } if message.contains("unreachable")),
        "{err}"
    );
}

#[test]
fn modules_that_are_not_wasi_commands_are_refused_at_load() {
    let fx = Fixture::new();
    for (name, wat, mentions) in [
        ("library", r#"(module (func (export "check")))"#, "_start"),
        (
            "foreign-import",
            r#"(module (import "env" "callback" (func)) (func (export "_start")))"#,
            "env::callback",
        ),
    ] {
        let err = fx.engine.load(&fx.hook(name, wat, limits())).unwrap_err();
        assert!(matches!(err, HookError::NotACommand { .. }), "{err}");
        assert!(err.to_string().contains(mentions), "{err}");
    }
    let cfg = fx.hook("garbage", "(module)", limits());
    std::fs::write(&cfg.module, b"\0asm\x01\0\0\0garbage").unwrap();
    let cfg = HookConfig {
        sha256: hex::encode(Sha256::digest(std::fs::read(&cfg.module).unwrap())),
        ..cfg
    };
    assert!(matches!(
        fx.engine.load(&cfg).unwrap_err(),
        HookError::Compile { .. }
    ));
}

#[test]
fn a_tampered_module_is_refused_before_compilation() {
    let fx = Fixture::new();
    let cfg = fx.hook("pinned", &writer(r#"{"allowed":true}"#, "", None), limits());
    // Not even WebAssembly any more: had it been compiled, this would be a compile error.
    std::fs::write(&cfg.module, b"tampered").unwrap();
    let err = fx.engine.load(&cfg).unwrap_err();
    let HookError::PinMismatch {
        expected,
        actual,
        path,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(expected, &cfg.sha256);
    assert_eq!(actual, &hex::encode(Sha256::digest(b"tampered")));
    assert_eq!(path, &cfg.module);
    let message = err.to_string();
    assert!(
        message.contains(expected.as_str()) && message.contains(actual.as_str()),
        "{message}"
    );
    assert!(
        cache_entries(&fx.cache_dir()).is_empty(),
        "nothing may be compiled or cached"
    );
}

#[test]
fn a_missing_module_is_unreadable() {
    let fx = Fixture::new();
    let mut cfg = fx.hook("gone", ENDLESS_LOOP, limits());
    cfg.module = fx.dir.path().join("nope.wasm");
    assert!(matches!(
        fx.engine.load(&cfg).unwrap_err(),
        HookError::UnreadableModule { .. }
    ));
}

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_second_load_comes_from_the_cache_and_a_damaged_entry_is_recompiled() {
    let fx = Fixture::new();
    let cfg = fx.hook("cached", &writer(r#"{"allowed":true}"#, "", None), limits());

    let first = fx.engine.load(&cfg).unwrap();
    assert!(!first.load_info().from_cache);
    let entries = cache_entries(&fx.cache_dir());
    assert_eq!(entries.len(), 1, "one entry per module");
    assert!(
        entries[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&cfg.sha256)
    );

    let second = fx.engine.load(&cfg).unwrap();
    assert!(second.load_info().from_cache);
    assert!(second.check(&HookRequest::default()).unwrap().allowed);

    // A new engine (another process) reads the same entry.
    let other = HookEngine::new(Some(fx.cache_dir())).unwrap();
    assert!(other.load(&cfg).unwrap().load_info().from_cache);

    // Flip one byte in the middle of the compiled code, once no hook holds the module (while
    // one does, the engine loads it from that hook, not from the disk).
    drop((first, second));
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entries[0], &bytes).unwrap();
    let recompiled = fx.engine.load(&cfg).unwrap();
    assert!(!recompiled.load_info().from_cache);
    assert!(
        recompiled
            .load_info()
            .cache_note
            .as_deref()
            .unwrap_or_default()
            .contains("checksum")
    );
    assert!(recompiled.check(&HookRequest::default()).unwrap().allowed);
    drop(recompiled);
    assert!(
        fx.engine.load(&cfg).unwrap().load_info().from_cache,
        "the recompiled module was cached again"
    );

    // A truncated entry too.
    std::fs::write(&entries[0], &bytes[..100]).unwrap();
    assert!(!fx.engine.load(&cfg).unwrap().load_info().from_cache);
}

#[test]
fn loads_of_one_module_at_once_compile_it_once() {
    // `promote --all` starts its first releases together on a cold cache: each used to compile
    // its own copy of the same module.
    let fx = Fixture::new();
    let cfg = fx.hook("shared", &writer(r#"{"allowed":true}"#, "", None), limits());
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let loads: Vec<_> = (0..8)
        .map(|_| {
            let (engine, cfg, start) = (fx.engine.clone(), cfg.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                engine.load(&cfg).unwrap()
            })
        })
        .collect();
    let hooks: Vec<_> = loads.into_iter().map(|l| l.join().unwrap()).collect();
    let compiled = hooks.iter().filter(|h| !h.load_info().from_cache).count();
    assert_eq!(
        compiled, 1,
        "one load compiles, the others share its module"
    );
    assert!(hooks[7].check(&HookRequest::default()).unwrap().allowed);
}

#[test]
fn without_a_cache_every_load_compiles() {
    let fx = Fixture::new();
    let engine = HookEngine::without_cache().unwrap();
    let cfg = fx.hook(
        "uncached",
        &writer(r#"{"allowed":true}"#, "", None),
        limits(),
    );
    assert!(!engine.load(&cfg).unwrap().load_info().from_cache);
    assert!(!engine.load(&cfg).unwrap().load_info().from_cache);
    assert_eq!(engine.cache_dir(), None);
}

#[test]
fn a_module_a_hook_holds_is_shared_by_the_next_load_and_freed_with_the_last() {
    let fx = Fixture::new();
    let engine = HookEngine::without_cache().unwrap();
    let cfg = fx.hook("shared", &writer(r#"{"allowed":true}"#, "", None), limits());
    let first = engine.load(&cfg).unwrap();
    let second = engine.load(&cfg).unwrap();
    assert!(!first.load_info().from_cache, "compiled");
    assert!(
        second.load_info().from_cache,
        "the module the first hook holds, not compiled again"
    );
    assert!(second.check(&HookRequest::default()).unwrap().allowed);
    // Another module is its own.
    let other = fx.hook("other", &writer(r#"{"allowed":false}"#, "", None), limits());
    assert!(
        !engine
            .load(&other)
            .unwrap()
            .check(&HookRequest::default())
            .unwrap()
            .allowed
    );
    drop((first, second));
    assert!(
        !engine.load(&cfg).unwrap().load_info().from_cache,
        "freed with the last hook that held it: compiled again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_runs_its_hooks_and_applies_failure_policies() {
    let fx = Fixture::new();
    let allow = fx.hook(
        "allow",
        &writer(r#"{"allowed":true,"warnings":["careful"]}"#, "", None),
        limits(),
    );
    let deny = fx.hook(
        "deny",
        &writer(
            r#"{"allowed":false,"message":"no","violations":[{"message":"v1"},{"message":"v2"}]}"#,
            "",
            None,
        ),
        limits(),
    );
    let mut broken = fx.hook("broken", &writer("garbage", "", None), limits());
    broken.failure_policy = FailurePolicy::Ignore;
    let mut elsewhere = fx.hook("elsewhere", ENDLESS_LOOP, limits());
    elsewhere.environments = Some(vec!["production".into()]);

    let hooks: Vec<_> = [allow, deny, broken, elsewhere]
        .iter()
        .map(|c| fx.engine.load(c).unwrap())
        .collect();
    let selected = select(&hooks, Phase::PreDeploy, "qa");
    assert_eq!(
        selected.iter().map(|h| h.name()).collect::<Vec<_>>(),
        ["allow", "deny", "broken"]
    );
    assert!(select(&hooks, Phase::PostDeploy, "qa").is_empty());

    let report = run_phase(&selected, Phase::PreDeploy, &HookRequest::default()).await;
    assert!(report.denied());
    assert_eq!(report.verdicts.len(), 3);
    assert!(matches!(
        report.verdicts[0].outcome,
        Outcome::Allowed { .. }
    ));
    assert_eq!(report.verdicts[0].warnings, ["careful"]);
    assert!(
        matches!(&report.verdicts[1].outcome, Outcome::Denied { violations, .. } if violations.len() == 2)
    );
    assert!(matches!(
        report.verdicts[2].outcome,
        Outcome::Error { ignored: true, .. }
    ));
    let rendered = report.render();
    assert!(
        rendered.contains("- v1") && rendered.contains("- v2") && !rendered.contains("broken"),
        "{rendered}"
    );
    assert!(
        report
            .warnings()
            .iter()
            .any(|w| w.contains("broken") && w.contains("ignored"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_hooks_of_a_phase_run_side_by_side() {
    let fx = Fixture::new();
    let limit = Duration::from_millis(300);
    let hooks: Vec<_> = (0..4)
        .map(|i| {
            let mut cfg = fx.hook(
                &format!("loop{i}"),
                ENDLESS_LOOP,
                HookLimits {
                    timeout: limit,
                    ..limits()
                },
            );
            cfg.failure_policy = FailurePolicy::Ignore;
            fx.engine.load(&cfg).unwrap()
        })
        .collect();
    let started = Instant::now();
    let report = run_phase(&hooks, Phase::PreDeploy, &HookRequest::default()).await;
    assert!(!report.denied(), "errors are ignored");
    assert!(report.verdicts.iter().all(|v| matches!(
        &v.outcome,
        Outcome::Error {
            error: HookError::Timeout { .. },
            ..
        }
    )));
    // Run one after the other they would take 4 × 300 ms at least.
    assert!(
        started.elapsed() < limit * 4,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn validate_settings_sends_the_settings() {
    let fx = Fixture::new();
    let hook = fx
        .engine
        .load(&fx.hook("echo-settings", ECHO, limits()))
        .unwrap();
    let err = hook
        .validate_settings(&serde_json::json!({"required": 2}))
        .unwrap_err();
    let HookError::InvalidResponse { excerpt, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        excerpt.contains(r#""settings":{"required":2}"#),
        "{excerpt}"
    );
}
