//! The embedded sentence encoder against the reference implementation, on the real weights.
//!
//! `data/minilm_reference.json` holds 20 sentences and their vectors as sentence-transformers
//! 6.3.0 on torch 2.15.0 (CPU, float32) computed them once from the same pip package
//! (`data/minilm_reference.py` is the script). The first 8 dimensions of one are written here
//! too, so a change of the data file shows in review.

use std::sync::Arc;

use shopfloor_local::{LocalEmbedder, LocalError, MAX_TOKENS};
use shopfloor_providers::{EmbeddingRequest, Provider};

/// The shared encoder from the pulled cache; fails, never skips, when it is not there.
fn embedder() -> Arc<LocalEmbedder> {
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "1");
    }
    match LocalEmbedder::shared("minilm") {
        Ok(embedder) => embedder,
        Err(e @ LocalError::NotPulled { .. }) => panic!(
            "these tests need the real encoder: {e}. Run `shopfloor models pull minilm` \
             (or point SHOPFLOOR_MODEL_DIR at a folder holding its files)"
        ),
        Err(e) => panic!("cannot load the embedded encoder: {e}"),
    }
}

struct Case {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn reference() -> Vec<Case> {
    let text = include_str!("../data/minilm_reference.json");
    let data: serde_json::Value = serde_json::from_str(text).expect("the reference file is JSON");
    data["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| Case {
            text: s["text"].as_str().expect("text").to_owned(),
            tokens: s["tokens"].as_u64().expect("tokens") as usize,
            vector: s["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The reference's first 8 dimensions of "The cat sits on the mat.".
const CAT_HEAD: [f32; 8] = [
    0.134_177_1,
    -0.032_900_3,
    -0.024_803_7,
    0.041_439,
    -0.036_347_7,
    0.041_814_2,
    0.031_216_7,
    0.037_201_6,
];

#[test]
fn the_reference_file_is_what_this_test_says() {
    let cases = reference();
    assert_eq!(cases.len(), 20);
    assert!(cases.iter().all(|c| c.vector.len() == 384));
    for (got, want) in cases[0].vector.iter().zip(CAT_HEAD) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

#[test]
fn twenty_sentences_match_sentence_transformers() {
    let embedder = embedder();
    assert_eq!(embedder.dimensions(), 384);
    let cases = reference();
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let got = embedder.embed_blocking(&texts).expect("embeddings");
    assert_eq!(got.vectors.len(), cases.len());
    let mut lowest = f64::MAX;
    for (case, vector) in cases.iter().zip(&got.vectors) {
        assert_eq!(
            embedder.tokenize(&case.text).expect("tokens").len(),
            case.tokens,
            "token count of {:?}",
            case.text
        );
        let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{:?}: norm {norm}", case.text);
        let c = cosine(vector, &case.vector);
        lowest = lowest.min(c);
        assert!(c >= 0.999, "{:?}: cosine {c} with the reference", case.text);
    }
    println!("lowest cosine over {} sentences: {lowest:.7}", cases.len());
    let tokens: usize = cases.iter().map(|c| c.tokens).sum();
    assert_eq!(got.tokens as usize, tokens);
}

/// One text alone gives the vector it gets in a batch: batching never mixes sentences.
#[test]
fn a_sentence_alone_gets_its_batch_vector() {
    let embedder = embedder();
    let cases = reference();
    for case in [&cases[2], &cases[19]] {
        let alone = embedder
            .embed_blocking(std::slice::from_ref(&case.text))
            .expect("embedding");
        let c = cosine(&alone.vectors[0], &case.vector);
        assert!(c >= 0.999, "{:?}: cosine {c}", case.text);
    }
}

/// Ids the `tokenizers` crate (the tokenizer this crate ran until issue 24) gave for strings
/// that stress a tokenizer, `[CLS]` and `[SEP]` included. Our own WordPiece gave the same on these
/// and on 20,000 random strings before `tokenizers` left.
const RECORDED_IDS: &[(&str, &[u32])] = &[
    ("Hello, world!", &[101, 7592, 1010, 2088, 999, 102]),
    ("  leading and trailing  ", &[101, 2877, 1998, 12542, 102]),
    (
        "tabs\tand\nnewlines\r\n\r\nand   three spaces",
        &[101, 21628, 2015, 1998, 2047, 12735, 1998, 2093, 7258, 102],
    ),
    (
        "Order #12345 costs $67.89 (incl. 20% VAT) on 2024-03-07.",
        &[
            101, 2344, 1001, 13138, 19961, 5366, 1002, 6163, 1012, 6486, 1006, 4297, 2140, 1012,
            2322, 1003, 12436, 2102, 1007, 2006, 16798, 2549, 1011, 6021, 1011, 5718, 1012, 102,
        ],
    ),
    (
        "½ ⅓ ² ³ ١٢٣ ४५६ Ⅻ ⑦",
        &[101, 1092, 1581, 1082, 1083, 100, 100, 100, 100, 102],
    ),
    (
        "naïve café résumé Ångström Øre ß straße",
        &[
            101, 15743, 7668, 13746, 17076, 15687, 1100, 2890, 1096, 2358, 27807, 102,
        ],
    ),
    (
        "日本語のテキストと中文混合 한국어 텍스트",
        &[
            101, 1864, 1876, 1950, 1671, 30239, 30227, 30233, 30240, 30192, 1746, 1861, 100, 1792,
            1469, 30006, 30021, 29991, 30014, 30020, 29999, 30008, 1467, 30009, 30020, 29997,
            30017, 30003, 30017, 102,
        ],
    ),
    (
        "emoji 🦀🚀👍🏽 family 👨\u{200d}👩\u{200d}👧 flag 🇫🇷 and 🥲",
        &[
            101, 7861, 29147, 2072, 100, 2155, 100, 5210, 100, 1998, 100, 102,
        ],
    ),
    (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        &[
            101, 1026, 1064, 10047, 1035, 2707, 1064, 1028, 5310, 7632, 1026, 1064, 10047, 1035,
            2203, 1064, 1028, 1026, 1064, 10047, 1035, 2707, 1064, 1028, 3353, 102,
        ],
    ),
    (
        "literal <|im_end|> inside <|endoftext|>text<|im_start|>",
        &[
            101, 18204, 1026, 1064, 10047, 1035, 2203, 1064, 1028, 2503, 1026, 1064, 2203, 15794,
            10288, 2102, 1064, 1028, 3793, 1026, 1064, 10047, 1035, 2707, 1064, 1028, 102,
        ],
    ),
    (
        "partial <|im_star and <|im_end| and <|<|im_end|>|>",
        &[
            101, 7704, 1026, 1064, 10047, 1035, 2732, 1998, 1026, 1064, 10047, 1035, 2203, 1064,
            1998, 1026, 1064, 1026, 1064, 10047, 1035, 2203, 1064, 1028, 1064, 1028, 102,
        ],
    ),
    (
        "don't I'd we'll they're you've it's 'quoted' DON'T",
        &[
            101, 2123, 1005, 1056, 1045, 1005, 1040, 2057, 1005, 2222, 2027, 1005, 2128, 2017,
            1005, 2310, 2009, 1005, 1055, 1005, 9339, 1005, 2123, 1005, 1056, 102,
        ],
    ),
    (
        "code: fn main() { println!(\"{}\", x[0]); } // done",
        &[
            101, 3642, 1024, 1042, 2078, 2364, 1006, 1007, 1063, 6140, 19666, 999, 1006, 1000,
            1063, 1065, 1000, 1010, 1060, 1031, 1014, 1033, 1007, 1025, 1065, 1013, 1013, 2589,
            102,
        ],
    ),
    (
        "URL https://example.com/a?b=c&d=e#f and email a.b@c.de",
        &[
            101, 24471, 2140, 16770, 1024, 1013, 1013, 2742, 1012, 4012, 1013, 1037, 1029, 1038,
            1027, 1039, 1004, 1040, 1027, 1041, 1001, 1042, 1998, 10373, 1037, 1012, 1038, 1030,
            1039, 1012, 2139, 102,
        ],
    ),
    ("   \n\n\t  ", &[101, 102]),
    ("", &[101, 102]),
    (
        "Ünïcödé ÀÉÎÕÜ ĀĒĪŌŪ",
        &[101, 27260, 29347, 3695, 2226, 29347, 3695, 2226, 102],
    ),
    (
        "Zero\u{200b}width\u{a0}nbsp\u{3000}ideographic space",
        &[
            101, 5717, 9148, 11927, 2232, 1050, 5910, 2361, 8909, 8780, 14773, 2686, 102,
        ],
    ),
    (
        "Ελληνικά и кириллица עברית العربية हिन\u{94d}दी ไทย",
        &[
            101, 1159, 29727, 29727, 24824, 16177, 18199, 29726, 14608, 1188, 1189, 10325, 16856,
            10325, 29436, 29436, 10325, 29751, 10260, 1259, 29789, 29811, 29796, 29813, 1270,
            23673, 29830, 17149, 29816, 14498, 19433, 1339, 29877, 29863, 29861, 29878, 100, 102,
        ],
    ),
    (
        "mixed1a2b3c 4d5 6.7e-8 0x1F",
        &[
            101, 3816, 2487, 2050, 2475, 2497, 2509, 2278, 1018, 2094, 2629, 1020, 1012, 1021,
            2063, 1011, 1022, 1014, 2595, 2487, 2546, 102,
        ],
    ),
    (
        "!!!??? ... --- *** ___ ~~~ ```",
        &[
            101, 999, 999, 999, 1029, 1029, 1029, 1012, 1012, 1012, 1011, 1011, 1011, 1008, 1008,
            1008, 1035, 1035, 1035, 1066, 1066, 1066, 1036, 1036, 1036, 102,
        ],
    ),
    (
        "Combining: e\u{301} a\u{308} n\u{303}",
        &[101, 11566, 1024, 1041, 1037, 1050, 102],
    ),
    (
        "\0nul and \u{7f} del \u{1b}[31m ansi �",
        &[
            101, 16371, 2140, 1998, 3972, 1031, 2861, 2213, 2019, 5332, 102,
        ],
    ),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        &[
            101, 13360, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057,
            11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057,
            11057, 11057, 11057, 11057, 11057, 11057, 11057, 11057, 102,
        ],
    ),
    (
        "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
        &[
            101, 1026, 18414, 7685, 3334, 1035, 3642, 1028, 6140, 1006, 1015, 1007, 1026, 18414,
            7685, 3334, 1035, 6434, 1028, 1015, 1026, 4064, 1035, 6434, 1028, 102,
        ],
    ),
];

#[test]
fn token_ids_match_the_recorded_ones() {
    let embedder = embedder();
    for (text, ids) in RECORDED_IDS {
        assert_eq!(
            embedder.tokenize(text).expect("tokens"),
            *ids,
            "ids for {text:?}"
        );
    }
}

#[test]
fn long_texts_are_cut_at_256_tokens() {
    let embedder = embedder();
    let long = "word ".repeat(1000);
    assert_eq!(embedder.tokenize(&long).expect("tokens").len(), MAX_TOKENS);
}

#[tokio::test]
async fn the_provider_embeds_and_refuses_what_it_cannot_do() {
    let embedder = embedder();
    let request = EmbeddingRequest {
        model: "minilm".into(),
        input: vec!["hello".into(), "The cat sits on the mat.".into()],
        ..EmbeddingRequest::default()
    };
    assert_eq!(embedder.unsupported_embedding(&request), None);
    let response = embedder.embed(&request).await.expect("embeddings");
    assert_eq!(response.vectors.len(), 2);
    assert_eq!(response.prompt_tokens, Some(3 + 9));
    let c = cosine(&response.vectors[1], &reference()[0].vector);
    assert!(c >= 0.999, "cosine {c}");

    let shorter = EmbeddingRequest {
        dimensions: Some(128),
        ..request.clone()
    };
    let refused = embedder.unsupported_embedding(&shorter).expect("refused");
    assert_eq!(refused.param, "dimensions");
    assert!(refused.reason.contains("384"), "{}", refused.reason);
    let same = EmbeddingRequest {
        dimensions: Some(384),
        ..request
    };
    assert_eq!(embedder.unsupported_embedding(&same), None);

    let chat = shopfloor_providers::ChatRequest::default();
    let error = embedder.complete(&chat).await.expect_err("no chat");
    assert!(error.to_string().contains("embedding model"), "{error}");
}

#[test]
fn the_chat_provider_refuses_the_encoder_and_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = shopfloor_local::LocalProvider::shared_in(dir.path(), "minilm").expect_err("kind");
    assert!(matches!(error, LocalError::WrongKind { .. }), "{error:?}");
    let error = LocalEmbedder::shared_in(dir.path(), "smollm2").expect_err("kind");
    assert!(
        error.to_string().contains("is not an embedding model"),
        "{error}"
    );
}
