//! Loom models of the cancellation tree.

use loom::future::block_on;
use loom::thread;

use crate::Token;

#[test]
fn cancel_races_child_creation() {
    loom::model(|| {
        let parent = Token::new();
        let canceller = {
            let parent = parent.clone();
            thread::spawn(move || parent.cancel())
        };
        let child = parent.child();
        canceller.join().expect("canceller");
        assert!(
            child.is_cancelled(),
            "a child created during cancel missed it"
        );
    });
}

#[test]
fn cancel_races_cancelled_registration() {
    loom::model(|| {
        let token = Token::new();
        let canceller = {
            let token = token.clone();
            thread::spawn(move || token.cancel())
        };
        // Would deadlock (and loom would say so) if the wake-up were lost.
        block_on(token.cancelled());
        canceller.join().expect("canceller");
    });
}

#[test]
fn child_drop_races_parent_cancel() {
    loom::model(|| {
        let parent = Token::new();
        let child = parent.child();
        let dropper = thread::spawn(move || drop(child));
        parent.cancel();
        dropper.join().expect("dropper");
        assert_eq!(
            parent.children_len(),
            0,
            "the dropped child stayed in its parent"
        );
    });
}

#[test]
fn middle_drop_races_root_cancel_still_reaches_leaf() {
    loom::model(|| {
        let root = Token::new();
        let middle = root.child();
        let leaf = middle.child();
        let dropper = thread::spawn(move || drop(middle));
        root.cancel();
        dropper.join().expect("dropper");
        assert!(
            leaf.is_cancelled(),
            "re-parenting lost the root's cancellation"
        );
    });
}

#[test]
fn concurrent_cancels_wake_the_waiter_once_with_one_reason() {
    loom::model(|| {
        let token = Token::new();
        let first = {
            let token = token.clone();
            thread::spawn(move || token.cancel_with("a"))
        };
        token.cancel_with("b");
        block_on(token.cancelled());
        first.join().expect("first");
        let reason = token.reason().expect("a reason");
        assert!(&*reason == "a" || &*reason == "b");
    });
}
