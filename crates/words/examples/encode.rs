//! Prints the word form of each socket address given on the command line, or the socket
//! address of each word address: `cargo run -p p2p-foundation-words --example encode -- 203.0.113.9:9000`.
use p2p_foundation_words::WordAddress;

fn main() {
    for arg in std::env::args().skip(1) {
        match arg.parse::<std::net::SocketAddr>() {
            Ok(addr) => println!("{addr} = {}", WordAddress::from(addr)),
            Err(_) => match WordAddress::parse_with_corrections(&arg) {
                Ok((words, corrections)) => {
                    for c in corrections {
                        println!("note: {c}");
                    }
                    println!("{words} = {}", words.to_socket_addr());
                }
                Err(e) => println!("{arg}: {e}"),
            },
        }
    }
}
