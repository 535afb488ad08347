//! AG-UI's rules (`wsc_event_monitor::AgUiRules`), as properties: every
//! generated well-formed run passes whole; and for any single drop,
//! duplicate or swap of its events, the verdict (where the run first
//! breaks a rule, and which rule) equals an independent reference written
//! from the rules' text (`wsc_tests::ag_ui::reference`).

use proptest::prelude::*;
use wsc_event_monitor::AgUiRules;
use wsc_tests::ag_ui::{Fault, Step, apply, build, reference, verdict};

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6).prop_map(Step::Open),
        ((0u8..5), any::<usize>()).prop_map(|(k, n)| Step::OpenIn(k, n)),
        any::<usize>().prop_map(Step::Inside),
        any::<usize>().prop_map(Step::Close),
        (0u8..5).prop_map(Step::Neutral),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        any::<usize>().prop_map(Fault::Drop),
        any::<usize>().prop_map(Fault::Duplicate),
        any::<usize>().prop_map(Fault::Swap),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_well_formed_run_passes_whole(steps in prop::collection::vec(step(), 0..60)) {
        let events = build(&steps);
        prop_assert_eq!(reference(&events), None);
        let mut rules = AgUiRules::new();
        for e in &events {
            let checked = rules.check(&e.to_string());
            prop_assert!(checked.is_ok(), "{}: {:?}", e, checked);
        }
        prop_assert!(rules.is_ended());
        prop_assert_eq!(rules.events(), events.len() as u64);
    }

    #[test]
    fn one_drop_duplicate_or_swap_is_judged_as_the_reference_judges_it(
        steps in prop::collection::vec(step(), 0..60),
        fault in fault(),
    ) {
        let events = apply(build(&steps), &fault);
        prop_assert_eq!(verdict(&events), reference(&events), "{:?}", events);
    }
}
