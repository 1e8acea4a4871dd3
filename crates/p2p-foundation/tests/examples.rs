//! Every example in `examples/` runs here, and what it reports is checked.

use std::time::Duration;

#[path = "../examples/ai_tool.rs"]
mod ai_tool;
#[path = "../examples/chat.rs"]
mod chat;
#[path = "../examples/kv.rs"]
mod kv;
#[path = "../examples/words.rs"]
mod words;

/// Hang guard only.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn guarded<T>(f: impl Future<Output = p2p_foundation::Result<T>>) -> T {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .expect("hang guard")
        .expect("the example works")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_delivers_both_ways() {
    let lines = guarded(chat::run()).await;
    assert_eq!(lines.len(), 2);
    assert!(lines[0].ends_with(": hi Bob, Alice here"), "{lines:?}");
    assert!(lines[1].ends_with(": hello Alice!"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ai_tool_is_found_by_capability_and_answers() {
    assert_eq!(guarded(ai_tool::run()).await, "\"P2P is here\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_store_reads_back_each_write() {
    assert_eq!(guarded(kv::run()).await, ["blue", "green"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_words_reach_the_proven_peer() {
    let (words, reached, alice) = guarded(words::run()).await;
    assert_eq!(words.split('.').count(), 3, "{words}");
    assert_eq!(reached, alice);
}
