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

/// Ids the `tokenizers` crate (the BPE this crate ran until issue 24) gave for strings that stress
/// a tokenizer: `(text, ids with special tokens matched, ids of the text read literally)`. Our
/// own BPE gave the same on these and on 22,000 random strings before `tokenizers` left.
const RECORDED_IDS: &[(&str, &[u32], &[u32])] = &[
    (
        "Hello, world!",
        &[19556, 28, 905, 17],
        &[19556, 28, 905, 17],
    ),
    (
        "  leading and trailing  ",
        &[216, 2899, 284, 35079, 256],
        &[216, 2899, 284, 35079, 256],
    ),
    (
        "tabs\tand\nnewlines\r\n\r\nand   three spaces",
        &[
            100, 7366, 197, 397, 198, 2241, 5110, 7209, 198, 397, 256, 1296, 5600,
        ],
        &[
            100, 7366, 197, 397, 198, 2241, 5110, 7209, 198, 397, 256, 1296, 5600,
        ],
    ),
    (
        "Order #12345 costs $67.89 (incl. 20% VAT) on 2024-03-07.",
        &[
            22977, 907, 33, 34, 35, 36, 37, 3499, 1885, 38, 39, 30, 40, 41, 365, 254, 497, 30, 216,
            34, 32, 21, 31889, 25, 335, 216, 34, 32, 34, 36, 29, 32, 35, 29, 32, 39, 30,
        ],
        &[
            22977, 907, 33, 34, 35, 36, 37, 3499, 1885, 38, 39, 30, 40, 41, 365, 254, 497, 30, 216,
            34, 32, 21, 31889, 25, 335, 216, 34, 32, 34, 36, 29, 32, 35, 29, 32, 39, 30,
        ],
    ),
    (
        "½ ⅓ ² ³ ١٢٣ ४५६ Ⅻ ⑦",
        &[
            16738, 216, 173, 223, 237, 216, 19133, 216, 39050, 216, 164, 111, 164, 112, 164, 113,
            216, 9310, 120, 9310, 121, 9310, 122, 216, 173, 223, 121, 216, 173, 235, 116,
        ],
        &[
            16738, 216, 173, 223, 237, 216, 19133, 216, 39050, 216, 164, 111, 164, 112, 164, 113,
            216, 9310, 120, 9310, 121, 9310, 122, 216, 173, 223, 121, 216, 173, 235, 116,
        ],
    ),
    (
        "naïve café résumé Ångström Øre ß straße",
        &[
            3546, 46494, 37366, 412, 2756, 5422, 2756, 5549, 223, 863, 1321, 45682, 5549, 242, 257,
            5549, 249, 4040, 34878, 85,
        ],
        &[
            3546, 46494, 37366, 412, 2756, 5422, 2756, 5549, 223, 863, 1321, 45682, 5549, 242, 257,
            5549, 249, 4040, 34878, 85,
        ],
    ),
    (
        "日本語のテキストと中文混合 한국어 텍스트",
        &[
            23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100,
            226, 7365, 118, 28589, 29184, 177, 132, 132, 16357, 226, 216, 33085, 246, 181, 130,
            251, 183, 240, 129, 48138, 223, 231, 183, 228, 114, 184, 228, 133,
        ],
        &[
            23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100,
            226, 7365, 118, 28589, 29184, 177, 132, 132, 16357, 226, 216, 33085, 246, 181, 130,
            251, 183, 240, 129, 48138, 223, 231, 183, 228, 114, 184, 228, 133,
        ],
    ),
    (
        "emoji 🦀🚀👍🏽 family 👨\u{200d}👩\u{200d}👧 flag 🇫🇷 and 🥲",
        &[
            391, 33777, 15107, 116, 218, 10813, 244, 218, 10813, 235, 231, 10813, 233, 138, 1564,
            15107, 235, 118, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117, 7048, 15107,
            225, 121, 10813, 225, 132, 284, 15107, 115, 127,
        ],
        &[
            391, 33777, 15107, 116, 218, 10813, 244, 218, 10813, 235, 231, 10813, 233, 138, 1564,
            15107, 235, 118, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117, 7048, 15107,
            225, 121, 10813, 225, 132, 284, 15107, 115, 127,
        ],
    ),
    (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        &[1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198],
        &[
            44, 108, 306, 79, 3738, 108, 46, 4093, 198, 26843, 44, 108, 306, 79, 486, 108, 46, 198,
            44, 108, 306, 79, 3738, 108, 46, 520, 9531, 198,
        ],
    ),
    (
        "literal <|im_end|> inside <|endoftext|>text<|im_start|>",
        &[17094, 1555, 216, 2, 2972, 216, 0, 2692, 1],
        &[
            17094, 1555, 2067, 108, 306, 79, 486, 108, 46, 2972, 2067, 108, 486, 1714, 2692, 108,
            46, 2692, 44, 108, 306, 79, 3738, 108, 46,
        ],
    ),
    (
        "partial <|im_star and <|im_end| and <|<|im_end|>|>",
        &[
            24975, 2067, 108, 306, 79, 16079, 284, 2067, 108, 306, 79, 486, 108, 284, 2067, 108, 2,
            108, 46,
        ],
        &[
            24975, 2067, 108, 306, 79, 16079, 284, 2067, 108, 306, 79, 486, 108, 284, 2067, 108,
            44, 108, 306, 79, 486, 108, 46, 108, 46,
        ],
    ),
    (
        "don't I'd we'll they're you've it's 'quoted' DON'T",
        &[
            12420, 982, 339, 6737, 392, 3060, 502, 2316, 346, 3543, 357, 506, 637, 385, 5036, 23,
            422, 2154, 23, 68,
        ],
        &[
            12420, 982, 339, 6737, 392, 3060, 502, 2316, 346, 3543, 357, 506, 637, 385, 5036, 23,
            422, 2154, 23, 68,
        ],
    ),
    (
        "code: fn main() { println!(\"{}\", x[0]); } // done",
        &[
            4635, 42, 24526, 1085, 1000, 1662, 1628, 34115, 17, 43331, 1002, 1792, 75, 32, 2255,
            43, 4029, 13241, 2294,
        ],
        &[
            4635, 42, 24526, 1085, 1000, 1662, 1628, 34115, 17, 43331, 1002, 1792, 75, 32, 2255,
            43, 4029, 13241, 2294,
        ],
    ),
    (
        "URL https://example.com/a?b=c&d=e#f and email a.b@c.de",
        &[
            14492, 5141, 1742, 7434, 30, 824, 31, 81, 47, 82, 45, 83, 22, 84, 45, 85, 19, 86, 284,
            4106, 253, 30, 82, 48, 83, 30, 1018,
        ],
        &[
            14492, 5141, 1742, 7434, 30, 824, 31, 81, 47, 82, 45, 83, 22, 84, 45, 85, 19, 86, 284,
            4106, 253, 30, 82, 48, 83, 30, 1018,
        ],
    ),
    ("   \n\n\t  ", &[333, 14436, 256], &[333, 14436, 256]),
    ("", &[], &[]),
    (
        "Ünïcödé ÀÉÎÕÜ ĀĒĪŌŪ",
        &[
            142, 246, 94, 25972, 83, 7466, 84, 2756, 5549, 218, 39614, 142, 232, 142, 239, 142,
            246, 24488, 218, 143, 236, 143, 120, 144, 230, 144, 120,
        ],
        &[
            142, 246, 94, 25972, 83, 7466, 84, 2756, 5549, 218, 39614, 142, 232, 142, 239, 142,
            246, 24488, 218, 143, 236, 143, 120, 144, 230, 144, 120,
        ],
    ),
    (
        "Zero\u{200b}width\u{a0}nbsp\u{3000}ideographic space",
        &[
            38767, 321, 229, 6930, 15442, 94, 32093, 12109, 218, 489, 4551, 1898,
        ],
        &[
            38767, 321, 229, 6930, 15442, 94, 32093, 12109, 218, 489, 4551, 1898,
        ],
    ),
    (
        "Ελληνικά и кириллица עברית العربية हिन\u{94d}दी ไทย",
        &[
            153, 239, 17162, 17162, 25723, 11517, 12001, 21118, 26112, 29972, 31338, 7872, 46879,
            12681, 35420, 32233, 6511, 12960, 112, 37657, 30825, 28532, 120, 27819, 34966, 20602,
            31462, 23339, 43463, 12335, 134, 27011, 30658, 16525, 44757, 37189, 216, 31933, 222,
            10283, 241, 10283, 112,
        ],
        &[
            153, 239, 17162, 17162, 25723, 11517, 12001, 21118, 26112, 29972, 31338, 7872, 46879,
            12681, 35420, 32233, 6511, 12960, 112, 37657, 30825, 28532, 120, 27819, 34966, 20602,
            31462, 23339, 43463, 12335, 134, 27011, 30658, 16525, 44757, 37189, 216, 31933, 222,
            10283, 241, 10283, 112,
        ],
    ),
    (
        "mixed1a2b3c 4d5 6.7e-8 0x1F",
        &[
            35781, 33, 81, 34, 82, 35, 83, 216, 36, 84, 37, 216, 38, 30, 39, 85, 29, 40, 216, 32,
            104, 33, 54,
        ],
        &[
            35781, 33, 81, 34, 82, 35, 83, 216, 36, 84, 37, 216, 38, 30, 39, 85, 29, 40, 216, 32,
            104, 33, 54,
        ],
    ),
    (
        "!!!??? ... --- *** ___ ~~~ ```",
        &[
            29646, 16693, 47, 4563, 21749, 33117, 36670, 216, 9493, 110, 47182,
        ],
        &[
            29646, 16693, 47, 4563, 21749, 33117, 36670, 216, 9493, 110, 47182,
        ],
    ),
    (
        "Combining: e\u{301} a\u{308} n\u{303}",
        &[25976, 1294, 42, 297, 151, 219, 253, 151, 226, 304, 151, 221],
        &[25976, 1294, 42, 297, 151, 219, 253, 151, 226, 304, 151, 221],
    ),
    (
        "\0nul and \u{7f} del \u{1b}[31m ansi �",
        &[
            190, 94, 336, 284, 216, 217, 1347, 216, 212, 75, 35, 33, 93, 354, 23190, 216, 24211,
        ],
        &[
            190, 94, 336, 284, 216, 217, 1347, 216, 212, 75, 35, 33, 93, 354, 23190, 216, 24211,
        ],
    ),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &[
            46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880,
            46880, 46880, 46880, 11510, 81,
        ],
        &[
            46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880, 46880,
            46880, 46880, 46880, 11510, 81,
        ],
    ),
    (
        "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
        &[13, 3272, 24, 33, 25, 14, 33, 16],
        &[
            44, 90, 1110, 44451, 79, 4635, 46, 3272, 24, 33, 47902, 90, 1110, 44451, 79, 4952, 46,
            33, 44, 16451, 79, 4952, 46,
        ],
    ),
];

#[test]
fn ids_match_the_recorded_ones() {
    let provider = provider();
    let tokenizer = provider.tokenizer();
    for (text, markup, literal) in RECORDED_IDS {
        assert_eq!(
            tokenizer.encode(text).expect("encode"),
            *markup,
            "ids for {text:?}"
        );
        let read = tokenizer.encode_literal(text).expect("encode");
        assert_eq!(read, *literal, "literal ids for {text:?}");
    }
}

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
