//! The automaton against the `jsonschema` crate: whatever it accepts validates, and every
//! valid compact text (and each of its prefixes) gets through.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

use super::automaton::{Dfa, DEAD, START};
use super::{check_schema, compile, Shape};

fn extraction_schema() -> Json {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "maxLength": 40 },
            "company": { "type": "string" },
            "amount": { "type": "number", "minimum": 0 },
            "currency": { "enum": ["EUR", "USD", "GBP"] },
            "urgent": { "type": "boolean" },
            "items": {
                "type": "array",
                "items": { "type": "string", "minLength": 1 },
                "minItems": 1,
                "maxItems": 4
            },
            "note": { "type": ["string", "null"] },
            "address": {
                "type": "object",
                "properties": { "city": { "type": "string" }, "zip": { "type": "integer" } },
                "required": ["city"],
                "additionalProperties": false
            }
        },
        "required": ["name", "company", "amount", "currency", "urgent", "items"],
        "additionalProperties": false
    })
}

fn mixed_schema() -> Json {
    json!({
        "$defs": { "tag": { "type": "string", "enum": ["a", "b\"c", "é"] } },
        "type": "object",
        "properties": {
            "id": { "type": "integer" },
            "score": { "anyOf": [{ "type": "number" }, { "type": "null" }] },
            "tags": { "type": "array", "items": { "$ref": "#/$defs/tag" } },
            "kind": { "const": "ticket" },
            "meta": {},
            "counts": { "type": "object", "additionalProperties": { "type": "integer" } },
            "code": { "type": "string", "minLength": 2, "maxLength": 3 },
            "level": { "enum": [1, 2.5, "high", null, true] }
        },
        "required": ["kind", "id"]
    })
}

/// Random text the automaton accepts: random allowed bytes, heading for the end once long.
fn random_accepted(dfa: &Dfa, rng: &mut StdRng) -> Vec<u8> {
    let mut text = Vec::new();
    let mut state = START;
    loop {
        if dfa.accepting(state) && (!dfa.has_exits(state) || rng.random_bool(0.2)) {
            return text;
        }
        let here = dfa.distance(state);
        let hurry = text.len() > 150;
        let options: Vec<u8> = (0..=255u8)
            .filter(|&b| {
                let next = dfa.step(state, b);
                next != DEAD && (!hurry || dfa.distance(next) < here)
            })
            .collect();
        assert!(
            !options.is_empty(),
            "stuck after {:?}",
            String::from_utf8_lossy(&text)
        );
        // Favour ASCII so that walks reach structure rather than long runs of UTF-8.
        let ascii: Vec<u8> = options.iter().copied().filter(u8::is_ascii).collect();
        let pool = if !ascii.is_empty() && rng.random_bool(0.9) {
            &ascii
        } else {
            &options
        };
        let b = pool[rng.random_range(0..pool.len())];
        text.push(b);
        state = dfa.step(state, b);
    }
}

fn assert_accepted_texts_validate(schema: &Json, shape: Shape<'_>, seed: u64) {
    let dfa = compile(shape).expect("compiles");
    let validator = jsonschema::validator_for(schema).expect("a valid schema");
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..20 {
        let text = random_accepted(&dfa, &mut rng);
        let text = String::from_utf8(text).expect("UTF-8");
        let value: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(validator.is_valid(&value), "{text} does not validate");
        if matches!(shape, Shape::AnyObject) {
            assert!(value.is_object(), "{text}");
        }
    }
}

/// `text` and each of its prefixes lead somewhere, and the whole is accepted.
fn assert_accepts_every_prefix(dfa: &Dfa, text: &str) {
    let mut state = START;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        state = dfa.step(state, b);
        assert_ne!(
            state,
            DEAD,
            "refused {:?} after {:?}",
            b as char,
            &text.as_bytes()[..i]
        );
    }
    assert!(dfa.accepting(state), "{text} is not accepted whole");
}

fn amount() -> impl Strategy<Value = f64> {
    (0u64..10_000_000_000u64).prop_map(|cents| cents as f64 / 100.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn accepted_extraction_texts_validate(seed in any::<u64>()) {
        let schema = extraction_schema();
        assert_accepted_texts_validate(&schema, Shape::Schema(&schema), seed);
    }

    #[test]
    fn accepted_mixed_texts_validate(seed in any::<u64>()) {
        let schema = mixed_schema();
        assert_accepted_texts_validate(&schema, Shape::Schema(&schema), seed);
    }

    #[test]
    fn accepted_any_objects_are_objects(seed in any::<u64>()) {
        assert_accepted_texts_validate(&json!({"type": "object"}), Shape::AnyObject, seed);
    }

    #[test]
    fn valid_extractions_and_their_prefixes_are_allowed(
        name in "\\PC{0,40}",
        company in any::<String>(),
        amount in amount(),
        currency in prop::sample::select(vec!["EUR", "USD", "GBP"]),
        urgent in any::<bool>(),
        items in prop::collection::vec("[a-z\"\\\\ ]{1,12}", 1..=4),
        note in prop::option::of(prop::option::of("[ -~\n\t]{0,10}")),
        city in prop::option::of(("\\PC{0,8}", prop::option::of(-99_999i64..99_999))),
    ) {
        let mut value = json!({
            "name": name, "company": company, "amount": amount, "currency": currency,
            "urgent": urgent, "items": items,
        });
        if let Some(note) = note {
            value["note"] = json!(note);
        }
        if let Some((city, zip)) = city {
            value["address"] = match zip {
                Some(zip) => json!({ "city": city, "zip": zip }),
                None => json!({ "city": city }),
            };
        }
        let schema = extraction_schema();
        let validator = jsonschema::validator_for(&schema).unwrap();
        prop_assume!(validator.is_valid(&value));
        // Required keys first, in `required`'s order, then the optional ones in key order.
        let order = ["name", "company", "amount", "currency", "urgent", "items", "address", "note"];
        let members: Vec<String> = order
            .iter()
            .filter_map(|k| value.get(*k).map(|v| format!("{}:{}", json!(k), v)))
            .collect();
        let compact = format!("{{{}}}", members.join(","));
        let spaced = format!("{{{}}}", members.join(", ").replacen("\":", "\": ", 1));
        let dfa = compile(Shape::Schema(&schema)).unwrap();
        assert_accepts_every_prefix(&dfa, &compact);
        assert_accepts_every_prefix(&dfa, &spaced);
    }
}

#[test]
fn refuses_what_the_schema_rules_out() {
    let schema = extraction_schema();
    let dfa = compile(Shape::Schema(&schema)).unwrap();
    let ok = r#"{"name":"Ann","company":"Acme","amount":12.5,"currency":"EUR","urgent":false,"items":["x"]}"#;
    assert!(dfa.accepts(ok.as_bytes()));
    for bad in [
        // A required key left out.
        r#"{"name":"Ann","company":"Acme","amount":12.5,"currency":"EUR","items":["x"]}"#,
        // Not in the enum.
        r#"{"name":"Ann","company":"Acme","amount":12.5,"currency":"JPY","urgent":false,"items":["x"]}"#,
        // An undeclared key.
        r#"{"name":"Ann","company":"Acme","amount":12.5,"currency":"EUR","urgent":false,"items":["x"],"x":1}"#,
        // Too few items, a negative amount, a string too long, a raw newline.
        r#"{"name":"Ann","company":"Acme","amount":12.5,"currency":"EUR","urgent":false,"items":[]}"#,
        r#"{"name":"Ann","company":"Acme","amount":-1,"currency":"EUR","urgent":false,"items":["x"]}"#,
        r#"{"name":"Annnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn","company":"Acme","amount":1,"currency":"EUR","urgent":false,"items":["x"]}"#,
        "{\"name\":\"A\nn\",\"company\":\"Acme\",\"amount\":1,\"currency\":\"EUR\",\"urgent\":false,\"items\":[\"x\"]}",
        // A lone surrogate escape, which serde_json would refuse.
        r#"{"name":"\ud800","company":"Acme","amount":1,"currency":"EUR","urgent":false,"items":["x"]}"#,
    ] {
        assert!(!dfa.accepts(bad.as_bytes()), "accepted {bad}");
    }
    // The shortest answer is what the distance says.
    let shortest =
        r#"{"name":"","company":"","amount":0,"currency":"EUR","urgent":true,"items":[""]}"#;
    assert!(!dfa.accepts(shortest.as_bytes()), "minLength 1 on items");
    assert_eq!(dfa.distance(START) as usize, shortest.len() + 1);
}

#[test]
fn names_what_it_cannot_enforce() {
    let cases = [
        (json!({"type": "string", "pattern": "^a"}), "#", "`pattern`"),
        (
            json!({"type": "object", "properties": {"n": {"type": "number", "maximum": 3}}}),
            "#/properties/n",
            "`maximum`",
        ),
        (
            json!({"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}),
            "#/$defs/n",
            "recursive",
        ),
        (json!({"oneOf": [{"type": "string"}]}), "#", "`oneOf`"),
        (
            json!({"type": "string", "maxLength": 100000}),
            "#",
            "maxLength",
        ),
        (
            json!({"type": "object", "required": ["x"], "additionalProperties": false}),
            "#",
            "`x`",
        ),
    ];
    for (schema, path, words) in cases {
        let error = check_schema(&schema).expect_err("refused");
        assert_eq!(error.path, path, "{error}");
        assert!(error.to_string().contains(words), "{error}");
    }
}

#[test]
fn schemas_compile_to_small_automata() {
    let dfa = compile(Shape::Schema(&extraction_schema())).unwrap();
    assert!(dfa.states() < 2_000, "{} states", dfa.states());
    let dfa = compile(Shape::AnyObject).unwrap();
    assert!(dfa.states() < 2_000, "{} states", dfa.states());
}
