//! Temporary: our BPE tokenizer against the `tokenizers` crate built the way this crate built
//! it before, on the real vocabulary, over a fixed corpus and many random strings.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::AddedToken;

use crate::gguf::Gguf;
use crate::tokenizer::Tokenizer;

pub(crate) const CORPUS: &[&str] = &[
    "Hello, world!",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\n\r\nand   three spaces",
    "Order #12345 costs $67.89 (incl. 20% VAT) on 2024-03-07.",
    "½ ⅓ ² ³ ١٢٣ ४५६ Ⅻ ⑦",
    "naïve café résumé Ångström Øre ß straße",
    "日本語のテキストと中文混合 한국어 텍스트",
    "emoji 🦀🚀👍🏽 family 👨‍👩‍👧 flag 🇫🇷 and 🥲",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "literal <|im_end|> inside <|endoftext|>text<|im_start|>",
    "partial <|im_star and <|im_end| and <|<|im_end|>|>",
    "don't I'd we'll they're you've it's 'quoted' DON'T",
    "code: fn main() { println!(\"{}\", x[0]); } // done",
    "URL https://example.com/a?b=c&d=e#f and email a.b@c.de",
    "   \n\n\t  ",
    "",
    "Ünïcödé ÀÉÎÕÜ ĀĒĪŌŪ",
    "Zero\u{200b}width\u{a0}nbsp\u{3000}ideographic space",
    "Ελληνικά и кириллица עברית العربية हिन्दी ไทย",
    "mixed1a2b3c 4d5 6.7e-8 0x1F",
    "!!!??? ... --- *** ___ ~~~ ```",
    "Combining: e\u{301} a\u{308} n\u{303}",
    "\u{0}nul and \u{7f} del \u{1b}[31m ansi \u{fffd}",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
];

/// The `tokenizers` pipeline this crate used: `(markup, literal)`.
fn reference(file: &Gguf) -> (tokenizers::Tokenizer, tokenizers::Tokenizer) {
    let strings = |key: &str| -> Vec<String> {
        file.get(key)
            .and_then(|v| v.as_array())
            .expect("array")
            .iter()
            .map(|v| v.as_str().expect("string").to_owned())
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens");
    let types: Vec<i32> = file
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
        .expect("types")
        .iter()
        .map(|v| v.as_i32().expect("i32"))
        .collect();
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), id as u32))
        .collect();
    let merges = strings("tokenizer.ggml.merges")
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').expect("space");
            (a.to_owned(), b.to_owned())
        })
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .expect("BPE");
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &ty)| ty == 3 || ty == 4)
        .map(|(t, &ty)| AddedToken::from(t.clone(), ty == 3))
        .collect();
    inner.add_special_tokens(&added);
    let mut literal = inner.clone();
    literal.set_encode_special_tokens(true);
    (inner, literal)
}

fn load() -> (Tokenizer, tokenizers::Tokenizer, tokenizers::Tokenizer) {
    let path = crate::pulled_path("smollm2").expect("the real model is pulled");
    let file = Gguf::read(&mut BufReader::new(File::open(path).expect("open"))).expect("GGUF");
    let ours = Tokenizer::from_gguf(&file).expect("ours");
    let (markup, literal) = reference(&file);
    (ours, markup, literal)
}

/// Random strings from a pool of the characters that stress a tokenizer.
pub(crate) fn random_strings(n: usize, seed: u64) -> Vec<String> {
    let pool: Vec<&str> = vec![
        "a",
        "b",
        "Z",
        "e",
        "é",
        "ü",
        "ß",
        "Å",
        "ñ",
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "0",
        "1",
        "7",
        "9",
        "١",
        "½",
        "²",
        "Ⅻ",
        ".",
        ",",
        "!",
        "?",
        "'",
        "'s",
        "'ll",
        "\"",
        "-",
        "_",
        "(",
        ")",
        "#",
        "$",
        "%",
        "@",
        "/",
        "\\",
        "日",
        "本",
        "語",
        "中",
        "한",
        "テ",
        "ä",
        "🦀",
        "👍🏽",
        "🥲",
        "👨‍👩‍👧",
        "\u{200b}",
        "\u{a0}",
        "\u{3000}",
        "\u{301}",
        "\u{0}",
        "\u{fffd}",
        "<|im_end|>",
        "<|im_start|>",
        "<|endoftext|>",
        "<|im",
        "|>",
        "the",
        " the",
        "ing",
        " world",
        "Hello",
        "don",
        "'t",
        "http",
        "://",
        "x",
        "y",
        "ll",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "[UNK]",
        "##",
        "İ",
        "Σ",
        "ς",
        "ﬁ",
        "Ω",
        "Ǆ",
    ];
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let len = next() % 24;
            (0..len).map(|_| pool[next() % pool.len()]).collect()
        })
        .collect()
}

#[test]
fn ours_matches_tokenizers_on_the_corpus_and_random_strings() {
    let (ours, markup, literal) = load();
    let mut texts: Vec<String> = CORPUS.iter().map(|s| (*s).to_owned()).collect();
    texts.extend(random_strings(20_000, 24));
    texts.extend(random_strings(2_000, 7).into_iter().map(|s| s.repeat(8)));
    let mut mismatches = HashMap::new();
    for text in &texts {
        let want = markup.encode(text.as_str(), false).expect("encode");
        let got = ours.encode(text).expect("ours");
        if got != want.get_ids() {
            mismatches.insert(format!("markup {text:?}"), (got, want.get_ids().to_vec()));
        }
        let want = literal.encode(text.as_str(), false).expect("encode");
        let got = ours.encode_literal(text).expect("ours");
        if got != want.get_ids() {
            mismatches.insert(format!("literal {text:?}"), (got, want.get_ids().to_vec()));
        }
    }
    for (text, (got, want)) in mismatches.iter().take(10) {
        println!("{text}: ours {got:?}, tokenizers {want:?}");
    }
    assert!(mismatches.is_empty(), "{} mismatches", mismatches.len());
}

#[test]
fn print_corpus_pins() {
    let (ours, _, _) = load();
    for text in CORPUS {
        let m = ours.encode(text).expect("ours");
        let l = ours.encode_literal(text).expect("ours");
        println!("PIN ({text:?}, &{m:?}, &{l:?}),");
    }
}

/// MiniLM's tokenizer as `embed.rs` set it up with `tokenizers`, and ours.
fn minilm() -> (crate::wordpiece::WordPiece, tokenizers::Tokenizer) {
    let model = crate::known_model("minilm").expect("known");
    let path = crate::model_dir().join(model.companions[0].file_name);
    let mut reference = tokenizers::Tokenizer::from_file(&path).expect("tokenizers reads it");
    reference.with_padding(None);
    reference
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: crate::MAX_TOKENS,
            ..tokenizers::TruncationParams::default()
        }))
        .expect("truncation");
    let text = std::fs::read_to_string(&path).expect("read");
    let ours = crate::wordpiece::WordPiece::from_json(&text, crate::MAX_TOKENS).expect("ours");
    (ours, reference)
}

#[test]
fn wordpiece_matches_tokenizers_on_the_corpus_and_random_strings() {
    let (ours, reference) = minilm();
    let mut texts: Vec<String> = CORPUS.iter().map(|s| (*s).to_owned()).collect();
    texts.extend(random_strings(20_000, 99));
    // Past the 256-token limit, in words and in one long word.
    texts.extend(random_strings(300, 5).into_iter().map(|s| s.repeat(40)));
    texts.push("word ".repeat(400));
    texts.push("x".repeat(150));
    let mut mismatches = Vec::new();
    for text in &texts {
        let want = reference.encode(text.as_str(), true).expect("encode");
        let got = ours.encode(text);
        if got != want.get_ids() {
            mismatches.push((text.clone(), got, want.get_ids().to_vec()));
        }
    }
    for (text, got, want) in mismatches.iter().take(10) {
        println!("{text:?}: ours {got:?}, tokenizers {want:?}");
    }
    assert!(mismatches.is_empty(), "{} mismatches", mismatches.len());
}

#[test]
fn print_wordpiece_pins() {
    let (ours, _) = minilm();
    for text in CORPUS {
        println!("WPIN ({text:?}, &{:?}),", ours.encode(text));
    }
}
