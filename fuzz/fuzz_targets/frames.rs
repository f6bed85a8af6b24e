//! Any text frame, read as a worker's message and as a coordinator's: never
//! a panic; the hand-written readers of `result` and `assign` frames say
//! what serde says of objects (only objects are messages); whatever decodes, encodes and decodes again to the same
//! message.
#![no_main]

use crowdfactor_protocol::{ClientMessage, DecodeError, ServerMessage};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

const LIMIT: usize = 1 << 20;

fn check<M: PartialEq + Debug + DeserializeOwned>(
    text: &str,
    decode: fn(&str, usize) -> Result<M, DecodeError>,
    encode: fn(&M) -> String,
) {
    let fast = decode(text, LIMIT);
    // serde also reads a tagged message from a list; the protocol does not.
    let object = text
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .starts_with('{');
    let serde = serde_json::from_str::<M>(text).ok().filter(|_| object);
    assert_eq!(
        fast.as_ref().ok(),
        serde.as_ref(),
        "the fast path and serde disagree on {text:?}"
    );
    if let Ok(msg) = fast {
        let again = decode(&encode(&msg), usize::MAX).expect("own encoding decodes");
        assert_eq!(again, msg);
    }
}

fuzz_target!(|text: &str| {
    check(text, ClientMessage::decode, ClientMessage::encode);
    check(text, ServerMessage::decode, ServerMessage::encode);
});
