//! The mock's decisions for whole requests: tool calls, answers from tool results, streaming.

use serde_json::{Map, json};

use super::*;
use crate::api::openai::FunctionDef;
use crate::backend::{Cancelled, NoSink};

fn tool(name: &str) -> Tool {
    Tool {
        kind: "function".into(),
        function: FunctionDef {
            name: name.into(),
            description: None,
            parameters: None,
            rest: Map::new(),
        },
    }
}

fn demo_tools() -> Vec<Tool> {
    ["demo__add", "demo__echo", "demo__uppercase", "demo__sleep"]
        .into_iter()
        .map(tool)
        .collect()
}

fn run(
    msgs: &[Message],
    tools: &[Tool],
    final_round: bool,
    stream: bool,
    params: &Map<String, Value>,
    sink: &mut dyn TurnSink,
) -> Result<Turn, Error> {
    let empty = Map::new();
    MockBackend.turn(
        &TurnRequest {
            model: "ignored",
            messages: msgs,
            tools,
            tool_choice: None,
            final_round,
            params,
            extra_body: &empty,
            stream,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        },
        sink,
    )
}

fn ask(text: &str, tools: &[Tool], final_round: bool) -> Turn {
    run(
        &[Message::text(Role::User, text)],
        tools,
        final_round,
        false,
        &Map::new(),
        &mut NoSink,
    )
    .unwrap()
}

#[test]
fn add_round_trip_reads_naturally() {
    let tools = demo_tools();
    let first = ask("what is 2 + 3?", &tools, false);
    assert_eq!(first.finish_reason, FinishReason::ToolCalls);
    assert_eq!(first.content, "Let me use the add tool.");
    assert_eq!(
        first.tool_calls,
        [ToolCall::new("call_1", "demo__add", r#"{"a":2,"b":3}"#)]
    );

    let mut assistant = Message::text(Role::Assistant, first.content.clone());
    assistant.tool_calls = Some(first.tool_calls.clone());
    let mut result = Message::text(Role::Tool, "5");
    result.tool_call_id = Some("call_1".into());
    let msgs = [
        Message::text(Role::User, "what is 2 + 3?"),
        assistant,
        result,
    ];
    let second = run(&msgs, &tools, false, false, &Map::new(), &mut NoSink).unwrap();
    assert_eq!(second.content, "2 + 3 = 5.");
    assert_eq!(second.finish_reason, FinishReason::Stop);
    assert!(second.tool_calls.is_empty());
}

#[test]
fn several_and_parallel_calls_get_sequential_ids_after_history() {
    let tools = demo_tools();
    let t = ask("sleep 10 x3 and echo hi", &tools, false);
    let ids: Vec<&str> = t.tool_calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["call_1", "call_2", "call_3", "call_4"]);
    assert_eq!(t.tool_calls[0].function.arguments, r#"{"ms":10}"#);
    assert_eq!(t.tool_calls[3].function.name, "demo__echo");
    assert_eq!(t.content, "Let me use the sleep and echo tools.");

    // Earlier calls in the history shift the numbering.
    let mut old = Message::text(Role::Assistant, "");
    old.tool_calls = Some(vec![ToolCall::new("call_1", "demo__echo", "{}")]);
    let msgs = [
        Message::text(Role::User, "x"),
        old,
        Message::text(Role::User, "echo again"),
    ];
    let t = run(&msgs, &tools, false, false, &Map::new(), &mut NoSink).unwrap();
    assert_eq!(t.tool_calls[0].id, "call_2");
}

#[test]
fn text_when_no_tool_offered_or_final_round() {
    let t = ask("what is 2 + 3?", &[tool("other__echo")], false);
    assert_eq!(t.content, "You said: what is 2 + 3?");
    assert!(t.tool_calls.is_empty());
    let t = ask("what is 2 + 3?", &demo_tools(), true);
    assert!(t.tool_calls.is_empty());
    assert!(
        t.content.starts_with("I can't use tools now"),
        "{}",
        t.content
    );
    // Client tools without a namespace match too.
    let t = ask("uppercase abc", &[tool("uppercase")], false);
    assert_eq!(t.tool_calls[0].function.arguments, r#"{"text":"abc"}"#);
}

#[test]
fn tool_errors_and_unknown_results_are_described() {
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.tool_calls = Some(vec![
        ToolCall::new("c1", "demo__echo", "{}"),
        ToolCall::new("c2", "demo__sleep", "{}"),
    ]);
    let mut r1 = Message::text(Role::Tool, "hi");
    r1.tool_call_id = Some("c1".into());
    let mut r2 = Message::text(Role::Tool, "[tool error] timed out");
    r2.tool_call_id = Some("c2".into());
    let msgs = [Message::text(Role::User, "q"), assistant, r1, r2];
    let t = run(&msgs, &demo_tools(), false, false, &Map::new(), &mut NoSink).unwrap();
    assert_eq!(
        t.content,
        "The echo tool returned: hi The sleep tool failed: timed out"
    );
}

struct Collect {
    deltas: Vec<String>,
    fail_after: usize,
}

impl TurnSink for Collect {
    fn text(&mut self, delta: &str) -> Result<(), Cancelled> {
        if self.deltas.len() == self.fail_after {
            return Err(Cancelled);
        }
        self.deltas.push(delta.to_string());
        Ok(())
    }
}

#[test]
fn stream_word_by_word_usage_and_cancel() {
    let msgs = [Message::text(Role::User, "hello there friend")];
    let mut sink = Collect {
        deltas: Vec::new(),
        fail_after: usize::MAX,
    };
    let t = run(&msgs, &[], false, true, &Map::new(), &mut sink).unwrap();
    assert_eq!(
        sink.deltas,
        ["You", " said:", " hello", " there", " friend"]
    );
    assert_eq!(sink.deltas.concat(), t.content);
    assert_eq!((t.usage.prompt_tokens, t.usage.completion_tokens), (3, 5));

    let mut sink = Collect {
        deltas: Vec::new(),
        fail_after: 2,
    };
    assert_eq!(
        run(&msgs, &[], false, true, &Map::new(), &mut sink),
        Err(Error::Cancelled)
    );
    assert_eq!(sink.deltas.len(), 2);
}

#[test]
fn max_tokens_cuts_text_with_length() {
    let params = json!({"max_tokens": 2}).as_object().cloned().unwrap();
    let msgs = [Message::text(Role::User, "a b c")];
    let t = run(&msgs, &[], false, false, &params, &mut NoSink).unwrap();
    assert_eq!(t.content, "You said:");
    assert_eq!(t.finish_reason, FinishReason::Length);
    assert_eq!(t.usage.completion_tokens, 2);
}

#[test]
fn split_words_keeps_whitespace() {
    assert_eq!(split_words("  a  b\nc "), ["  a", "  b", "\nc", " "]);
    assert!(split_words("").is_empty());
}
