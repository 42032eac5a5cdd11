// SPDX-License-Identifier: MPL-2.0
fn main() {
    gst_plugin_version_helper::info();
    // The `openblas` feature calls CBLAS (declared by cblas-sys) from Debian's
    // libopenblas-dev, whose kernels are chosen per CPU at run time.
    if std::env::var_os("CARGO_FEATURE_OPENBLAS").is_some() {
        println!("cargo:rustc-link-lib=openblas");
    }
}
