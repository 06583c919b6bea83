//! The tokenizer rebuilt from GGUF metadata, checked against fixed ids.

use crate::common;

use common::provider;

/// Ids printed by llama.cpp (llama-cpp-2 0.1.160, `tokenize(text, add_special = false,
/// parse_special = true)`) for the published GGUF file: run crates/local/llama-bench to see them.
const LLAMA_CPP_IDS: &[(&str, &[u32])] = &[
    (
        "<|im_start|>user\nHello, world!<|im_end|>\n",
        &[1, 4093, 198, 19556, 28, 905, 17, 2, 198],
    ),
    (
        "Order 12345 costs $67.89",
        &[
            22977, 216, 33, 34, 35, 36, 37, 3499, 1885, 38, 39, 30, 40, 41,
        ],
    ),
    (
        "  leading spaces and trailing   ",
        &[216, 2899, 5600, 284, 35079, 333],
    ),
    (
        "naïve café — 日本語 🦀",
        &[
            3546, 46494, 37366, 1841, 17097, 241, 115, 40993, 179, 120, 248, 15107, 116, 218,
        ],
    ),
    ("don't they'll I'm", &[12420, 982, 502, 3060, 339, 5248]),
    ("<|endoftext|>", &[0]),
];

#[test]
fn ids_match_llama_cpp() {
    let provider = provider();
    let tokenizer = provider.tokenizer();
    for (text, expected) in LLAMA_CPP_IDS {
        assert_eq!(
            tokenizer.encode(text).expect("encode"),
            *expected,
            "ids for {text:?}"
        );
    }
}

#[test]
fn special_tokens_are_single_ids() {
    let provider = provider();
    let tokenizer = provider.tokenizer();
    assert_eq!(tokenizer.encode("<|endoftext|>").expect("encode"), [0]);
    assert_eq!(tokenizer.encode("<|im_start|>").expect("encode"), [1]);
    assert_eq!(tokenizer.encode("<|im_end|>").expect("encode"), [2]);
    assert_eq!(tokenizer.vocab_size(), 49152);
}

#[test]
fn no_prefix_space_after_a_special_token() {
    let provider = provider();
    let tokenizer = provider.tokenizer();
    let ids = tokenizer.encode("<|im_start|>user\n").expect("encode");
    let user = tokenizer.token_id("user").expect("`user` is one token");
    let newline = tokenizer.token_id("Ċ").expect("newline is one token");
    assert_eq!(ids, [1, user, newline]);
}

#[test]
fn digits_are_split_one_per_token() {
    let provider = provider();
    let tokenizer = provider.tokenizer();
    let digit = |d: &str| tokenizer.token_id(d).expect("digit token");
    assert_eq!(
        tokenizer.encode("2024").expect("encode"),
        [digit("2"), digit("0"), digit("2"), digit("4")]
    );
}

#[test]
fn literal_encoding_keeps_special_strings_as_text() {
    let provider = provider();
    let tokenizer = provider.tokenizer();
    let ids = tokenizer.encode_literal("<|im_end|>").expect("encode");
    assert!(ids.len() > 1 && !ids.contains(&2), "{ids:?}");
    assert_eq!(tokenizer.decode(&ids), "<|im_end|>");
}

#[test]
fn decode_inverts_encode_on_unicode_text() {
    let provider = provider();
    let tokenizer = provider.tokenizer();
    for text in [
        "naïve café — 日本語 🦀",
        "  leading spaces and trailing   ",
        "tabs\tand\r\nnewlines\n\n",
        "Ünïcödé: ℕ ⊆ ℤ, ½ + ¼ = ¾, emoji 👩‍👩‍👧",
        "Order 12345 costs $67.89",
    ] {
        let ids = tokenizer.encode(text).expect("encode");
        assert_eq!(tokenizer.decode(&ids), text);
    }
    // Control tokens never show in output.
    assert_eq!(
        tokenizer.decode(&[1, tokenizer.token_id("user").expect("user"), 2]),
        "user"
    );
}
