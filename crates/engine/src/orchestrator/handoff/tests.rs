//! The hand-off queue: order, end of input, idle deadline, a vanished receiver.

use std::time::Duration;

use super::*;

#[test]
fn items_arrive_in_order_and_the_end_is_seen() {
    let (sender, receiver) = queue(4);
    let producer = std::thread::spawn(move || {
        for n in 0..1_000 {
            sender.send(n).expect("receiver alive");
        }
    });
    let received: Vec<i32> = (0..1_000).map(|_| receiver.recv(None).expect("item")).collect();
    assert_eq!(received, (0..1_000).collect::<Vec<_>>());
    producer.join().expect("producer");
    assert_eq!(receiver.recv(None), Err(RecvError::Disconnected));
}

#[test]
fn an_idle_producer_means_a_timeout_and_a_gone_receiver_frees_the_producer() {
    let (sender, receiver) = queue::<i32>(2);
    let deadline = Instant::now() + Duration::from_millis(20);
    assert_eq!(receiver.recv(Some(deadline)), Err(RecvError::Timeout));
    assert!(Instant::now() >= deadline, "waited until the deadline");
    sender.send(1).expect("room");
    sender.send(2).expect("room");
    let blocked = std::thread::spawn(move || sender.send(3));
    drop(receiver);
    assert_eq!(blocked.join().expect("producer"), Err(3), "a full queue with no receiver gives the item back");
}
