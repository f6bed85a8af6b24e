//! Property-based fuzzing of the message decoder: arbitrary bytes, and valid
//! messages with random mutations, never panic; valid messages round-trip.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

use crowdfactor_protocol::*;
use proptest::prelude::*;

/// Factor lists of a chunk (which has at least one number).
fn factor_lists() -> impl Strategy<Value = FactorLists> {
    proptest::collection::vec(proptest::collection::vec(any::<u128>(), 0..6), 1..6)
        .prop_map(|lists| lists.iter().collect())
}

/// The numbers of an assignment: a short list, or a valid range.
fn chunk_numbers() -> impl Strategy<Value = ChunkNumbers> {
    prop_oneof![
        proptest::collection::vec(any::<u128>(), 0..6).prop_map(ChunkNumbers::List),
        (1u128..1 << 100, 1u128..1 << 20, 1..MAX_RANGE_COUNT).prop_map(|(start, step, count)| {
            NumberRange::new(start, step, count).unwrap().into()
        }),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of("[a-z]{0,8}")
        )
            .prop_map(|(slots, threads, name)| {
                ClientMessage::Hello(Hello {
                    protocol: PROTOCOL_VERSION,
                    kind: WorkerKind::Native,
                    slots,
                    threads,
                    name,
                    agent: "fuzz".into(),
                    token: None,
                })
            }),
        (0u64..1 << 53).prop_map(|chunk_id| ClientMessage::Ack { chunk_id }),
        Just(ClientMessage::Heartbeat),
        (any::<u32>(), any::<bool>())
            .prop_map(|(slots, waiting)| ClientMessage::Capacity { slots, waiting }),
        proptest::collection::vec(0u64..1 << 53, 0..5)
            .prop_map(|chunk_ids| ClientMessage::Release { chunk_ids }),
        (
            (0u64..1 << 53),
            factor_lists(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(chunk_id, factors, compute_us)| {
                ClientMessage::Result(ChunkResult {
                    chunk_id,
                    factors,
                    compute_us,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = ClientMessage::decode(&text, 1 << 20);
        let _ = ServerMessage::decode(&text, 1 << 20);
    }

    #[test]
    fn valid_messages_round_trip(msg in client_message()) {
        let text = msg.encode();
        prop_assert_eq!(ClientMessage::decode(&text, 1 << 24).unwrap(), msg);
    }

    #[test]
    fn mutated_assignments_decode_as_serde_decodes(chunk_id in 0u64..1 << 53, job in 0u64..1000, numbers in chunk_numbers(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let msg = ServerMessage::Assign(Assignment { chunk_id, job_id: job.to_string(), numbers });
        let mut bytes = msg.encode().into_bytes();
        prop_assert_eq!(ServerMessage::decode(std::str::from_utf8(&bytes).unwrap(), 1 << 24).unwrap(), msg);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(cut.index(bytes.len() + 1).max(1));
        if let Ok(text) = String::from_utf8(bytes) {
            prop_assert_eq!(
                ServerMessage::decode(&text, 1 << 24).ok(),
                serde_json::from_str::<ServerMessage>(&text).ok()
            );
        }
    }

    #[test]
    fn mutated_messages_decode_or_fail_cleanly(msg in client_message(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = msg.encode().into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(cut.index(bytes.len() + 1).max(1));
        if let Ok(text) = String::from_utf8(bytes) {
            if text.starts_with(r#"{"type":"result","#) {
                // The hand-written reader of result frames says what serde says.
                prop_assert_eq!(
                    ClientMessage::decode(&text, 1 << 24).ok(),
                    serde_json::from_str::<ClientMessage>(&text).ok()
                );
            }
            match ClientMessage::decode(&text, 1 << 24) {
                Ok(m) => { let _ = m.encode(); }
                Err(e) => prop_assert!(matches!(e.code(), ErrorCode::BadMessage)),
            }
        }
    }
}
