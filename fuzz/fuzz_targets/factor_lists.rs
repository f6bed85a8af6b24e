//! A result's factor lists as text: parsed or refused, never a panic; what
//! parses is in the one form the lists are written in (so no reader took
//! text it should refuse, or read it wrong), and writes back to text that
//! parses to the same lists.
#![no_main]

use crowdfactor_protocol::FactorLists;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for sep in [b';', b'\n'] {
        if let Ok(lists) = FactorLists::parse(text, sep) {
            let mut written = String::new();
            lists
                .clone()
                .without_source()
                .write_text(&mut written, char::from(sep));
            assert_eq!(written, text, "read as {lists:?}");
            let back = lists.clone().into_text(char::from(sep));
            let again = FactorLists::parse(&back, sep).expect("own text parses");
            assert!(
                lists.iter().eq(again.iter()),
                "{text:?} → {back:?} reads differently"
            );
        }
    }
});
