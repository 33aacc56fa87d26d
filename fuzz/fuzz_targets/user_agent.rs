//! The browser's User-Agent, which the phone shows as "browser on OS".
#![no_main]

use libfuzzer_sys::fuzz_target;
use qrlogin_server::routes::phone::describe_agent;

fuzz_target!(|data: &[u8]| {
    let ua = String::from_utf8_lossy(data);
    // The server keeps at most 512 characters of it.
    let ua: String = ua.chars().take(512).collect();
    let (browser, os) = describe_agent(&ua);
    assert!(!browser.is_empty() && !os.is_empty());
});
