//! A guest that allocates until its memory runs out. The host's memory
//! limit must stop it (a trap of this guest alone).

fn main() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1 << 20]);
        println!("holding {} MiB", blocks.len());
    }
}
