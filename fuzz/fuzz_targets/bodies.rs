//! The JSON request bodies: create (`CreateBody`), sign-in (`SignIn`) and
//! approve (`Decision`). Never a panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qrlogin_server::routes::browser::CreateBody;
use qrlogin_server::routes::phone::{Decision, SignIn};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<CreateBody>(data);
    let _ = serde_json::from_slice::<SignIn>(data);
    if let Ok(d) = serde_json::from_slice::<Decision>(data) {
        // What the approve handler does with the code.
        if let Some(code) = d.match_code {
            let _ = code.trim().parse::<u8>();
        }
    }
});
