//! Shared by `local_bench` and the llama.cpp reference in `llama-bench` (which includes this
//! file by path), so both measure the same prompt the same way.

/// About 200 tokens once in the chat template: a report to summarise.
#[allow(dead_code)] // embed_bench uses only the RSS.
pub fn report_message() -> String {
    let body = "The warehouse in Leeds received 40 pallets of packaging on Monday, but the delivery note listed 42. \
        The supplier says two pallets were sent to the Sheffield site by mistake and will be moved this week. \
        Meanwhile the packing line is short of medium boxes and the night shift had to pause for an hour. ";
    format!("Summarise this report for the operations lead in three sentences.\n\n{body}{body}")
}

/// The system message of measured prompt number `run`: its number comes first, so no two
/// runs share more than a few tokens and each reads its prompt whole (the inference thread
/// keeps recent prompts and would otherwise read only the last two tokens again).
#[allow(dead_code)] // embed_bench uses only the RSS.
pub fn system_message(run: u32) -> String {
    format!("Request {run}. You are a helpful AI assistant named SmolLM, trained by Hugging Face")
}

/// This process's peak resident set size (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}
