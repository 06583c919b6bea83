//! Pins the embedded model's behaviour on the example workflow (issue 24): the token ids of its
//! prompts, the greedy answers, the top candidates of the first step, seeded sampling, the
//! constrained choice and the Q8_0 cache, all recorded from the candle-based code before candle
//! was taken out. Any change to the tokenizer, the weights' conversion, the matrix products or
//! the sampler that changes what a user sees fails here. (Since candle left, the logits and
//! probabilities still match the recorded ones to the bit; the small tolerances below leave
//! room for a reordered sum, not for another token. The one exception is the constrained
//! choice's probabilities, re-recorded when the options moved from one decoding step per token
//! to one tree pass read as a prompt chunk is (issue 31): the same labels, and each option's
//! tokens now computed with the prompt's order of sums, which moves a probability by up to 0.05
//! on these tickets; see `CHOICES`.)
//!
//! The prompts are the scaffold's `ticket-triage` workflow (crates/cli/src/scaffold) rendered
//! over rows of its dataset, copied here so that editing the example does not move the pins.

use shopfloor_providers::{ChatRequest, Message, Provider, Role};

use crate::convert::{self, Loaded};
use crate::generate::Context;
use crate::prompt::{encode_chatml, END_OF_TEXT, IM_END};
use crate::prompt_cache::PromptCache;
use crate::sample::SamplingParams;

const SYSTEM: &str =
    "You are a support ticket router. Read the ticket and answer with exactly one \
                      word: billing, bug, account or other.";

/// `(dataset id, subject, body)` of the rows the pins are taken on.
const TICKETS: [(&str, &str, &str); 6] = [
    (
        "t001",
        "Can't log in",
        "I keep getting 'invalid credentials' even though I reset my password twice this \
         morning. I need access today for a client meeting.",
    ),
    (
        "t002",
        "Charged twice this month",
        "Our card was charged $480 twice on March 3 for the same Team plan invoice (INV-20431). \
         Please refund the duplicate charge.",
    ),
    (
        "t003",
        "2FA codes rejected",
        "The 6-digit codes from my authenticator app are always rejected at login. I checked \
         that the time on my phone is set automatically.",
    ),
    (
        "t005",
        "API returns 429 on every request",
        "Since yesterday our integration gets HTTP 429 on every request to /v2/projects, even at \
         one request per minute. The rate limit headers say we have 1000 requests remaining.",
    ),
    (
        "t031",
        "WHY AM I STILL BEING BILLED",
        "I cancelled in January!!! You charged me again on the 1st. I want my money back NOW \
         and I want written confirmation that the subscription is gone.",
    ),
    (
        "t014",
        "Profitability report times out",
        "When I open the profitability report for 2024 and group it by client, the page spins for \
         about a minute and then shows 'Something went wrong'. Grouping by project works. We \
         have around 80 clients and 3 years of data. Other reports are fine. This started after \
         the last update, I think. Our finance team needs it for the board meeting on Thursday.",
    ),
];

/// The workflow's two messages for one ticket, as the engine renders them.
fn messages(subject: &str, body: &str) -> Vec<Message> {
    vec![
        Message::new(Role::System, SYSTEM),
        Message::new(
            Role::User,
            format!(
                "Ticket subject: {subject}\n\n{body}\n\nWhich queue should handle this ticket: \
                 billing, bug, account or other?"
            ),
        ),
    ]
}

fn loaded() -> Loaded {
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "1");
    }
    let model = crate::known_model("smollm2").expect("smollm2 is in the catalog");
    let path = crate::pulled_path("smollm2").unwrap_or_else(|| {
        panic!(
            "these pins need the real model in {}: run `shopfloor models pull smollm2`",
            crate::model_dir().display()
        )
    });
    convert::load(&path, model.sha256).expect("load the model")
}

/// Next-token logits after everything `context` has read.
fn logits(context: &Context) -> Vec<f32> {
    context.logits().expect("logits").to_vec()
}

/// The ids of the `n` highest logits, highest first (ties to the lower id).
fn top(logits: &[f32], n: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&i, &j| logits[j as usize].total_cmp(&logits[i as usize]));
    ids.truncate(n);
    ids
}

/// What `sampling` generates after `prompt`, as the inference thread does it, up to a stop
/// token or `max` tokens; and the logits of the first step.
fn generate(
    loaded: &Loaded,
    prompt: &[u32],
    sampling: SamplingParams,
    max: usize,
    prompts: &mut PromptCache,
) -> (Vec<u32>, Vec<f32>) {
    let stops = [IM_END, END_OF_TEXT].map(|t| loaded.tokenizer.token_id(t).expect("stop token"));
    let mut context = read(loaded, prompt, prompts);
    let first = logits(&context);
    let mut sampler = sampling.sampler();
    let mut ids = Vec::new();
    while ids.len() < max {
        let token = sampler
            .sample(context.logits().expect("logits"))
            .expect("sample");
        ids.push(token);
        if stops.contains(&token) {
            break;
        }
        context.feed(token).expect("feed");
    }
    (ids, first)
}

/// `prompt` read as the inference thread reads it, starting from what `prompts` keeps.
fn read(loaded: &Loaded, prompt: &[u32], prompts: &mut PromptCache) -> Context {
    let mut context = Context::new(&loaded.weights, prompt.to_vec());
    while !context.prefill_step(prompts).expect("prefill") {}
    context
}

const GREEDY: SamplingParams = SamplingParams {
    temperature: 0.0,
    top_p: None,
    seed: 0,
};

/// The prompt ids of every ticket, rendered whole and encoded the provider's way (markup and
/// literal text apart): the two agree, and both equal the pins.
#[test]
fn prompt_ids_are_pinned() {
    let loaded = loaded();
    let tokenizer = &loaded.tokenizer;
    for ((id, subject, body), expected) in TICKETS.iter().zip(PROMPT_IDS) {
        let messages = messages(subject, body);
        let whole = tokenizer
            .encode(&crate::render_chatml(&messages, None))
            .expect("encode");
        let pieces = encode_chatml(tokenizer, &messages, None).expect("encode");
        assert_eq!(whole, expected, "{id}: rendered whole");
        assert_eq!(pieces, expected, "{id}: markup and text apart");
    }
}

/// Greedy answers of four tickets, and the first step's five best candidates with their logits.
#[test]
fn greedy_answers_are_pinned() {
    let loaded = loaded();
    // One prompt cache for all, as the inference thread keeps: the tickets share their start.
    let mut prompts = PromptCache::default();
    for (i, (id, subject, body)) in TICKETS.iter().take(GREEDY_IDS.len()).enumerate() {
        let prompt = encode_chatml(&loaded.tokenizer, &messages(subject, body), None).expect("ids");
        let (ids, first) = generate(&loaded, &prompt, GREEDY, 24, &mut prompts);
        assert_eq!(ids, GREEDY_IDS[i], "{id}: greedy ids");
        let best = top(&first, 5);
        let (top_ids, top_logits) = FIRST_TOP5[i];
        assert_eq!(best, top_ids, "{id}: first step's top five");
        for (&t, want) in best.iter().zip(top_logits) {
            let got = first[t as usize];
            assert!(
                (got - want).abs() < 1e-4,
                "{id}: logit of {t}: {got} vs {want}"
            );
        }
    }
}

/// The portable products (what a CPU without AVX2 runs) give the same greedy answers and the
/// same first logits, to the bit: forced for the length of this test.
#[test]
fn the_portable_path_gives_the_same_answers() {
    let loaded = loaded();
    let mut prompts = PromptCache::default();
    let (_, subject, body) = TICKETS[0];
    let prompt = encode_chatml(&loaded.tokenizer, &messages(subject, body), None).expect("ids");
    let (fast_ids, fast_first) = generate(&loaded, &prompt, GREEDY, 8, &mut prompts);
    crate::q8::cap_simd(Some(crate::q8::Simd::Portable));
    let portable = generate(&loaded, &prompt, GREEDY, 8, &mut PromptCache::default());
    crate::q8::cap_simd(None);
    assert_eq!(portable.0, fast_ids);
    assert!(GREEDY_IDS[0].starts_with(&portable.0), "{:?}", portable.0);
    assert!(portable.1 == fast_first, "the first logits differ");
}

/// A prompt read from the prefix of one kept before gives the logits a fresh read gives, to
/// the bit; the example's tickets share their first tokens (template, system prompt, "Ticket
/// subject:"), and the same prompt twice reads only its last two tokens again.
#[test]
fn a_kept_prefix_reads_the_same_logits() {
    let loaded = loaded();
    let mut kept = PromptCache::default();
    for (n, (id, subject, body)) in TICKETS.iter().enumerate() {
        let prompt = encode_chatml(&loaded.tokenizer, &messages(subject, body), None).expect("ids");
        let fresh = logits(&read(&loaded, &prompt, &mut PromptCache::default()));
        let shared = kept
            .lookup(&loaded.weights, &prompt, prompt.len())
            .map(|(shared, _)| shared);
        if n > 0 {
            assert!(shared.is_some_and(|s| s >= 30), "{id}: shared {shared:?}");
        }
        assert_eq!(logits(&read(&loaded, &prompt, &mut kept)), fresh, "{id}");
        let again = kept.lookup(&loaded.weights, &prompt, prompt.len());
        assert_eq!(again.map(|(s, _)| s), Some(prompt.len() - 2), "{id}");
        assert_eq!(
            logits(&read(&loaded, &prompt, &mut kept)),
            fresh,
            "{id}, again"
        );
    }
}

/// Seeded sampling, with and without top-p, draws the same tokens as before.
#[test]
fn seeded_sampling_is_pinned() {
    let loaded = loaded();
    let (_, subject, body) = TICKETS[1];
    let prompt = encode_chatml(&loaded.tokenizer, &messages(subject, body), None).expect("ids");
    for (sampling, expected) in [
        (
            SamplingParams {
                temperature: 0.8,
                top_p: Some(0.9),
                seed: 7,
            },
            SAMPLED_TOP_P,
        ),
        (
            SamplingParams {
                temperature: 1.0,
                top_p: None,
                seed: 42,
            },
            SAMPLED_ALL,
        ),
    ] {
        let (ids, _) = generate(&loaded, &prompt, sampling, 16, &mut PromptCache::default());
        assert_eq!(ids, expected, "{sampling:?}");
    }
}

/// The example workflow's real call: constrained choice among its labels, end to end.
#[tokio::test]
async fn label_choices_are_pinned() {
    loaded();
    let provider = crate::LocalProvider::shared("smollm2").expect("provider");
    let labels: Vec<String> = ["billing", "bug", "account", "other"]
        .map(String::from)
        .to_vec();
    for ((id, subject, body), (label, probability)) in TICKETS.iter().zip(CHOICES) {
        let request = ChatRequest {
            model: "smollm2".to_owned(),
            messages: messages(subject, body),
            max_tokens: Some(8),
            temperature: Some(0.0),
            choices: Some(labels.clone()),
            ..ChatRequest::default()
        };
        let response = provider.complete(&request).await.expect("choice");
        assert_eq!(response.text, label, "{id}");
        let p = response.choice_probability.expect("a probability");
        assert!((p - probability).abs() < 1e-6, "{id}: {p} vs {probability}");
    }
}

/// A tree pass (what constrained choice reads its options with) gives each node the logits
/// the prompt and the node's path give read as one prompt: every row of a pass is computed as
/// a prompt chunk's rows are, so only the last layer's product (one row there, all the nodes'
/// here) adds its sums in another order.
#[test]
fn a_tree_pass_reads_each_path_as_a_prompt_does() {
    let loaded = loaded();
    let (_, subject, body) = TICKETS[0];
    let prompt = encode_chatml(&loaded.tokenizer, &messages(subject, body), None).expect("ids");
    let mut context = read(&loaded, &prompt, &mut PromptCache::default());
    let before = logits(&context);
    // Any tokens do: two branches under one root, and a second root.
    let tokens = [6958, 281, 2300, 14213];
    let paths = [vec![0], vec![0, 1], vec![0, 2], vec![3]];
    let tree = context.read_tree(&tokens, &paths).expect("tree pass");
    assert_eq!(
        logits(&context),
        before,
        "the tree pass leaves the context as it was"
    );
    let vocab = before.len();
    for (node, path) in paths.iter().enumerate() {
        let mut whole = prompt.clone();
        whole.extend(path.iter().map(|&n| tokens[n]));
        let want = logits(&read(&loaded, &whole, &mut PromptCache::default()));
        let got = &tree[node * vocab..(node + 1) * vocab];
        assert_eq!(top(got, 5), top(&want, 5), "node {node}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "node {node}: logits differ by up to {worst}");
    }
}

/// Three tickets decoding together in one pass get, to the bit, the logits each gets alone,
/// step after step (their contexts differ in length, so each attends to its own cache).
#[test]
fn decoding_together_reads_what_each_reads_alone() {
    let loaded = loaded();
    let prompts: Vec<Vec<u32>> = TICKETS[..3]
        .iter()
        .map(|(_, subject, body)| {
            encode_chatml(&loaded.tokenizer, &messages(subject, body), None).expect("ids")
        })
        .collect();
    let read_all = || -> Vec<Context> {
        let fresh = |p: &Vec<u32>| read(&loaded, p, &mut PromptCache::default());
        prompts.iter().map(fresh).collect()
    };
    let (mut alone, mut together) = (read_all(), read_all());
    for step in 0..4 {
        let tokens: Vec<u32> = alone.iter().map(|c| top(&logits(c), 1)[0]).collect();
        for (context, &token) in alone.iter_mut().zip(&tokens) {
            context.feed(token).expect("feed");
        }
        let mut steps: Vec<(&mut Context, u32)> = together.iter_mut().zip(tokens).collect();
        Context::feed_together(&mut steps).expect("feed together");
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert!(logits(a) == logits(t), "step {step}, ticket {i}");
            assert_eq!(a.position(), t.position());
        }
    }
}

/// The Q8_0 conversion cached beside the published file is byte for byte what it was.
#[test]
fn q8_0_cache_is_pinned() {
    loaded();
    let path = crate::pulled_path("smollm2").expect("pulled");
    let cache = convert::cache_path(&path);
    let bytes = std::fs::read(&cache).expect("read the cache");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    assert_eq!(digest, CACHE_SHA256, "{}", cache.display());
}

// The pins, recorded from the candle-based code (commit c582406, which added them) with
// `SHOPFLOOR_THREADS=1`.

const PROMPT_IDS: [&[u32]; 6] = [
    &[
        1, 9690, 198, 2683, 359, 253, 1199, 19574, 18476, 30, 4164, 260, 19574, 284, 2988, 351,
        3869, 582, 2229, 42, 38971, 28, 15630, 28, 2051, 355, 550, 30, 2, 198, 1, 4093, 198, 48931,
        305, 2138, 42, 1978, 982, 1993, 281, 198, 198, 57, 1446, 2967, 637, 23633, 18814, 23, 908,
        1239, 339, 15453, 957, 8824, 6757, 451, 5738, 30, 339, 737, 1594, 1834, 327, 253, 5688,
        4751, 30, 198, 198, 14413, 18157, 868, 5605, 451, 19574, 42, 38971, 28, 15630, 28, 2051,
        355, 550, 47, 2, 198, 1, 520, 9531, 198,
    ],
    &[
        1, 9690, 198, 2683, 359, 253, 1199, 19574, 18476, 30, 4164, 260, 19574, 284, 2988, 351,
        3869, 582, 2229, 42, 38971, 28, 15630, 28, 2051, 355, 550, 30, 2, 198, 1, 4093, 198, 48931,
        305, 2138, 42, 40569, 277, 6757, 451, 3531, 198, 198, 5425, 3421, 436, 9295, 1885, 36, 40,
        32, 6757, 335, 3903, 216, 35, 327, 260, 1142, 12733, 1252, 48686, 365, 2113, 70, 29, 34,
        32, 36, 35, 33, 595, 8765, 37393, 260, 23488, 5363, 30, 198, 198, 14413, 18157, 868, 5605,
        451, 19574, 42, 38971, 28, 15630, 28, 2051, 355, 550, 47, 2, 198, 1, 520, 9531, 198,
    ],
    &[
        1, 9690, 198, 2683, 359, 253, 1199, 19574, 18476, 30, 4164, 260, 19574, 284, 2988, 351,
        3869, 582, 2229, 42, 38971, 28, 15630, 28, 2051, 355, 550, 30, 2, 198, 1, 4093, 198, 48931,
        305, 2138, 42, 216, 34, 8533, 9606, 11238, 198, 198, 504, 216, 38, 29, 23141, 9606, 429,
        957, 8714, 1508, 566, 359, 1811, 11238, 418, 17389, 30, 339, 12775, 338, 260, 655, 335,
        957, 5460, 314, 932, 8192, 30, 198, 198, 14413, 18157, 868, 5605, 451, 19574, 42, 38971,
        28, 15630, 28, 2051, 355, 550, 47, 2, 198, 1, 520, 9531, 198,
    ],
    &[
        1, 9690, 198, 2683, 359, 253, 1199, 19574, 18476, 30, 4164, 260, 19574, 284, 2988, 351,
        3869, 582, 2229, 42, 38971, 28, 15630, 28, 2051, 355, 550, 30, 2, 198, 1, 4093, 198, 48931,
        305, 2138, 42, 12077, 6765, 216, 36, 34, 41, 335, 897, 3116, 198, 198, 7230, 18400, 653,
        7657, 4364, 17108, 216, 36, 34, 41, 335, 897, 3116, 288, 2272, 102, 34, 31, 28188, 28, 908,
        418, 582, 3116, 567, 8427, 30, 378, 2421, 3673, 14742, 1643, 392, 457, 216, 33, 32, 32, 32,
        8649, 6219, 30, 198, 198, 14413, 18157, 868, 5605, 451, 19574, 42, 38971, 28, 15630, 28,
        2051, 355, 550, 47, 2, 198, 1, 520, 9531, 198,
    ],
    &[
        1, 9690, 198, 2683, 359, 253, 1199, 19574, 18476, 30, 4164, 260, 19574, 284, 2988, 351,
        3869, 582, 2229, 42, 38971, 28, 15630, 28, 2051, 355, 550, 30, 2, 198, 1, 4093, 198, 48931,
        305, 2138, 42, 14305, 73, 10974, 339, 5022, 19708, 19226, 4728, 389, 19708, 3010, 198, 198,
        57, 35295, 281, 4450, 29646, 1206, 9295, 549, 1163, 335, 260, 216, 33, 302, 30, 339, 1277,
        957, 2478, 1056, 41949, 284, 339, 1277, 2855, 20049, 338, 260, 22047, 314, 7270, 30, 198,
        198, 14413, 18157, 868, 5605, 451, 19574, 42, 38971, 28, 15630, 28, 2051, 355, 550, 47, 2,
        198, 1, 520, 9531, 198,
    ],
    &[
        1, 9690, 198, 2683, 359, 253, 1199, 19574, 18476, 30, 4164, 260, 19574, 284, 2988, 351,
        3869, 582, 2229, 42, 38971, 28, 15630, 28, 2051, 355, 550, 30, 2, 198, 1, 4093, 198, 48931,
        305, 2138, 42, 4576, 30647, 1378, 1711, 578, 198, 198, 2427, 339, 1440, 260, 25927, 1378,
        327, 216, 34, 32, 34, 36, 284, 1528, 357, 411, 5688, 28, 260, 3013, 31776, 327, 563, 253,
        8427, 284, 965, 2744, 637, 35524, 3514, 4061, 4289, 6404, 274, 411, 1391, 1806, 30, 1046,
        457, 1130, 216, 40, 32, 7696, 284, 216, 35, 929, 282, 940, 30, 3550, 4631, 359, 4979, 30,
        669, 2841, 990, 260, 1596, 6850, 28, 339, 1510, 30, 3698, 9999, 2299, 1923, 357, 327, 260,
        4411, 4751, 335, 14963, 30, 198, 198, 14413, 18157, 868, 5605, 451, 19574, 42, 38971, 28,
        15630, 28, 2051, 355, 550, 47, 2, 198, 1, 520, 9531, 198,
    ],
];
const GREEDY_IDS: [&[u32]; 4] = [
    // "This ticket should be handled by either billing or other. The billing ticket should be handled by the billing queue, as it"
    &[
        1348, 19574, 868, 325, 15170, 411, 2267, 38971, 355, 550, 30, 378, 38971, 19574, 868, 325,
        15170, 411, 260, 38971, 18157, 28, 347, 357,
    ],
    // "This ticket should be handled by the billing queue. The ticket is a refundable charge, and the billing queue should handle"
    &[
        1348, 19574, 868, 325, 15170, 411, 260, 38971, 18157, 30, 378, 19574, 314, 253, 37393, 515,
        5363, 28, 284, 260, 38971, 18157, 868, 5605,
    ],
    // "The queue should handle this ticket: billing, bug, account."
    &[
        504, 18157, 868, 5605, 451, 19574, 42, 38971, 28, 15630, 28, 2051, 30, 2,
    ],
    // "The queue that should handle this ticket is billing."
    &[504, 18157, 338, 868, 5605, 451, 19574, 314, 38971, 30, 2],
];
const FIRST_TOP5: [([u32; 5], [f32; 5]); 4] = [
    (
        [1348, 504, 2683, 2068, 57],
        [32.058605, 32.044685, 31.9828, 31.001131, 30.865635],
    ),
    (
        [1348, 504, 50, 2683, 2068],
        [31.428898, 31.318724, 30.591, 30.363855, 29.81846],
    ),
    (
        [504, 1348, 2683, 2068, 11192],
        [32.605297, 31.783342, 31.487774, 31.018162, 30.900417],
    ),
    (
        [504, 2683, 11192, 1348, 14413],
        [32.21372, 31.704689, 31.589457, 31.525475, 31.354763],
    ),
];
// "In the case of a ticketed client, the queue handling this ticket should be"
const SAMPLED_TOP_P: &[u32] = &[
    788, 260, 1671, 282, 253, 8531, 11166, 5688, 28, 260, 18157, 7729, 451, 19574, 868, 325,
];
// "Dirty - CRASH - ITS CURI-USS\nTo keep track"
const SAMPLED_ALL: &[u32] = &[
    52, 7491, 731, 11012, 22246, 731, 46750, 340, 40991, 29, 4501, 67, 198, 2068, 1446, 4320,
];
/// Re-recorded with the tree pass (issue 31). The labels are candle's; its probabilities were
/// 0.3674, 0.9093, 0.8701, 0.9368, 0.8127 and 0.7425, computed one decoding step per token.
const CHOICES: [(&str, f64); 6] = [
    ("account", 0.40477404960425356),
    ("billing", 0.8989319331718205),
    ("billing", 0.8572585531887674),
    ("billing", 0.9214023260561219),
    ("billing", 0.7631909363173526),
    ("billing", 0.7558294820570645),
];
const CACHE_SHA256: &str = "6034250024b6a8cc1c5bd792e8384b1cc17ec64ca8f31c74146e0b61fc13808b";
