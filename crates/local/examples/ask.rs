//! Ask the embedded model one question: `cargo run -p shopfloor-local --example ask -- "QUESTION" [PREFIX] [CHOICE,CHOICE]`.

use shopfloor_local::LocalProvider;
use shopfloor_providers::{ChatRequest, Message, Provider, Role};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let question = args
        .next()
        .unwrap_or_else(|| "What is the capital of France?".to_owned());
    let prefix = args.next().filter(|p| !p.is_empty());
    let choices = args
        .next()
        .map(|c| c.split(',').map(str::to_owned).collect());
    let provider = LocalProvider::shared("smollm2")?;
    let request = ChatRequest {
        model: "smollm2".to_owned(),
        messages: vec![Message::new(Role::User, question)],
        max_tokens: Some(64),
        assistant_prefix: prefix,
        choices,
        ..ChatRequest::default()
    };
    let response = provider.complete(&request).await?;
    println!("{response:#?}");
    Ok(())
}
