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
