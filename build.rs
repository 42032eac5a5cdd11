// SPDX-License-Identifier: MPL-2.0
fn main() {
    gst_plugin_version_helper::info();
    // The `openblas` feature calls CBLAS (declared by cblas-sys) from the system's
    // OpenBLAS (Debian: libopenblas-dev), whose kernels are chosen per CPU at run
    // time.
    if std::env::var_os("CARGO_FEATURE_OPENBLAS").is_some()
        && let Err(err) = pkg_config::Config::new()
            .atleast_version("0.3")
            .probe("openblas")
    {
        panic!(
            "the `openblas` feature (on by default) needs OpenBLAS: install libopenblas-dev \
             (Debian, Ubuntu), or build without it: --no-default-features --features hf-hub \
             ({err})"
        );
    }
}
