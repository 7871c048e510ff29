//! A guest that never calls the host again: it computes forever. The host
//! must keep serving other guests (epoch yields) and be able to stop it.

fn main() {
    println!("spinning");
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
