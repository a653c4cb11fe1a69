//! A server keeps the most instance slots (its own process: the choice is made once per
//! process, before the first hook engine).

use kubectl_release::hooks::{HookEngine, serve_many_callers};

#[test]
fn a_server_keeps_the_most_slots_whatever_the_cpus() {
    serve_many_callers();
    let engine = HookEngine::without_cache().unwrap();
    assert_eq!(engine.instance_slots(), 32);
    // Chosen once: every engine of the process has the same.
    assert_eq!(HookEngine::without_cache().unwrap().instance_slots(), 32);
}
