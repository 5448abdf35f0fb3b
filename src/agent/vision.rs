//! Images from MCP tools for vision models (assistant `vision: true`).
//!
//! Chat Completions tool messages carry text only, so the images a round's tools returned are
//! added right after that round's tool results as one `user` message: a text part naming the
//! tool call, then an `image_url` part (`data:` URL) per image. The tool messages keep their
//! `[image: …]` placeholder text. The images move out of the tool messages
//! (`Message::tool_images` is emptied), so a backend that forwards tool images itself (Anthropic)
//! sends each image once — there as image blocks of the user turn that holds the results.
//!
//! Images are capped per request: at most [`MAX_IMAGE_BYTES_PER_REQUEST`] bytes of base64 over
//! all rounds; an image past the cap is left out and the user message says so.

use serde_json::{Value, json};

use crate::api::openai::{Content, Message, Role};

/// Total base64 bytes of tool images sent to the model in one request (all rounds together).
pub const MAX_IMAGE_BYTES_PER_REQUEST: usize = 8 * 1024 * 1024;

/// What is left of a request's image allowance.
#[derive(Debug)]
pub struct Budget {
    left: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget { left: bytes }
    }
}

/// The user message with the images of `results` (taken out of them), or `None` when the
/// tools returned no image.
pub fn images_message(results: &mut [Message], budget: &mut Budget) -> Option<Message> {
    let mut parts: Vec<Value> = Vec::new();
    for r in results.iter_mut() {
        if r.tool_images.is_empty() {
            continue;
        }
        let images = std::mem::take(&mut r.tool_images);
        let call = r.tool_call_id.as_deref().unwrap_or("?");
        let mut kept = Vec::new();
        let mut dropped = 0usize;
        for img in images {
            let url = format!("data:{};base64,{}", img.media_type, img.data);
            if url.len() <= budget.left {
                budget.left -= url.len();
                kept.push(json!({"type": "image_url", "image_url": {"url": url}}));
            } else {
                dropped += 1;
            }
        }
        let mut label = format!("Image output of tool call {call}:");
        if kept.is_empty() {
            label = format!("Tool call {call} returned images that were not sent:");
        }
        if dropped > 0 {
            label.push_str(&format!(
                " ({dropped} image(s) left out: over the per-request image limit)"
            ));
        }
        parts.push(json!({"type": "text", "text": label}));
        parts.extend(kept);
    }
    (!parts.is_empty()).then(|| Message::new(Role::User, Some(Content::Parts(parts))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::ToolImage;

    fn result(id: &str, images: &[&str]) -> Message {
        let mut m = Message::text(Role::Tool, "[image: image/png, 3 bytes]");
        m.tool_call_id = Some(id.into());
        m.tool_images = images
            .iter()
            .map(|d| ToolImage {
                media_type: "image/png".into(),
                data: (*d).into(),
            })
            .collect();
        m
    }

    #[test]
    fn images_become_parts_of_one_user_message_and_leave_the_tool_messages() {
        let mut results = vec![result("c1", &["AAAA"]), result("c2", &[])];
        let mut b = Budget::new(1000);
        let m = images_message(&mut results, &mut b).unwrap();
        assert_eq!(m.role, Role::User);
        let Some(Content::Parts(parts)) = &m.content else {
            panic!("{m:?}")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,AAAA");
        assert!(results[0].tool_images.is_empty());
        assert_eq!(results[0].text_content(), "[image: image/png, 3 bytes]");
    }

    #[test]
    fn the_cap_counts_over_rounds_and_says_what_was_left_out() {
        let big = "A".repeat(60);
        let mut b = Budget::new(100);
        let mut r1 = vec![result("c1", &[&big])];
        assert!(images_message(&mut r1, &mut b).is_some());
        let mut r2 = vec![result("c2", &[&big])];
        let m = images_message(&mut r2, &mut b).unwrap();
        let text = serde_json::to_string(&m.content).unwrap();
        assert!(text.contains("left out"), "{text}");
        assert!(!text.contains("image_url"), "{text}");
    }

    #[test]
    fn no_images_no_message() {
        let mut results = vec![result("c1", &[])];
        assert!(images_message(&mut results, &mut Budget::new(10)).is_none());
    }
}
