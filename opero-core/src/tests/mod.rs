//! Behaviour tests of the crate, one file per sentence, in the crate itself: a mutation run
//! (scripts/mutants.sh) then rebuilds one test binary per mutant, not the library as well.

mod a_bulkhead_admits_up_to_its_limits_and_names_them_when_full;
mod a_circuit_breaker_opens_on_its_triggers_and_probes_after_its_open_duration;
mod a_rate_limiter_limits_behind_any_pointer_and_spaces_permits_by_its_interval;
mod a_stored_entry_s_header_decides_whose_value_it_is_and_until_when;
mod errors_keep_every_attempt_s_story_and_name_what_failed;
mod every_setting_is_accepted_at_its_bound_and_refused_past_it_by_name;
mod retry_policies_decide_whether_and_how_long_to_wait;
