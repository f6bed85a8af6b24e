//! A result's factor lists as text: parsed or refused, never a panic; what
//! parses writes back to text that parses to the same lists.
#![no_main]

use crowdfactor_protocol::FactorLists;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for sep in [b';', b'\n'] {
        if let Ok(lists) = FactorLists::parse(text, sep) {
            let back = lists.clone().into_text(char::from(sep));
            let again = FactorLists::parse(&back, sep).expect("own text parses");
            assert!(
                lists.iter().eq(again.iter()),
                "{text:?} → {back:?} reads differently"
            );
        }
    }
});
