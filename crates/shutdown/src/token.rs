//! Hierarchical cancellation tokens.
//!
//! # Tree layout
//!
//! ```text
//!            root Node ──────────────┐ children: slab of Arc<Node>
//!           ▲        ▲               ▼
//!   parent  │        │ parent    child Node ── children ──► grandchild Node
//!           │        └──────────────────────────────────────── (re-parented here when the
//!                                                                child's last Token drops)
//! ```
//!
//! A [`Token`] is a counted handle to a `Node`. Parents hold their children strongly and children
//! hold their parent strongly; the cycle is broken explicitly, never left to reference counts:
//!
//! * when the last `Token` of a node drops, the node leaves its parent's slab and hands its own
//!   children to that parent (or detaches them if it had none), so a dropped child leaves nothing
//!   behind in its parent and grandchildren still hear a grandparent's cancellation;
//! * when a node is cancelled, it empties its slab and its cancelled descendants forget their
//!   parents.
//!
//! # Invariants
//!
//! * `Node::cancelled` only ever goes from `false` to `true`, and only under the node's lock.
//! * A node that is not cancelled and has live handles sits in exactly one slot of its parent's
//!   slab (the one `State::slot_in_parent` names), unless its parent is cancelled.
//! * A cancelled node's slab is empty; `child()` of a cancelled node creates a cancelled child that
//!   is never linked.
//!
//! # Deadlock safety
//!
//! Locks are only ever nested top-down: parent, then child, then grandchild. Cancellation holds one
//! lock at a time and walks the tree with an explicit stack (a parent with 100k children does not
//! recurse). Dropping a node's last handle locks its parent, then itself, then each of its
//! children in turn; since its parent may change under it (its parent's own last handle dropping),
//! it re-checks the parent after locking and retries.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering, SharedStr, lock};
use crate::waiters::{WaiterKey, WakerSlab, wake_all};

/// A cancellation token: cheap to clone, shared by everything that should stop together.
///
/// Cancelling a token cancels every [`child`](Token::child) created from it (and theirs), but
/// cancelling a child leaves its parent alone. Clones share one state. A token's state is freed
/// when its last clone drops, and a dropped child leaves no trace in its parent.
///
/// # Examples
///
/// ```
/// use weir_shutdown::Token;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = Token::new();
/// let connection = server.child();
///
/// let handler = tokio::spawn({
///     let connection = connection.clone();
///     async move {
///         connection.cancelled().await;
///         "stopped"
///     }
/// });
///
/// server.cancel_with("SIGTERM");
/// assert_eq!(handler.await.unwrap(), "stopped");
/// assert!(connection.is_cancelled());
/// assert_eq!(connection.reason().as_deref(), Some("SIGTERM"));
/// # }
/// ```
pub struct Token {
    node: Arc<Node>,
}

struct Node {
    /// `true` once cancelled; written only under `state`'s lock, read without it by
    /// `is_cancelled`.
    cancelled: AtomicBool,
    /// Live [`Token`] handles; when it falls to zero the node unlinks itself from the tree.
    handles: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    /// Why the node was cancelled, if a reason was given.
    reason: Option<SharedStr>,
    /// The node whose cancellation reaches this one; `None` for a root, a detached node, or a
    /// cancelled one.
    parent: Option<Arc<Node>>,
    /// This node's slot in `parent`'s `children` (meaningful only while `parent` is `Some`).
    slot_in_parent: usize,
    children: ChildSlab,
    waiters: WakerSlab,
}

/// The children of a node, each in a slot it keeps until it unlinks.
#[derive(Default)]
struct ChildSlab {
    slots: Vec<Option<Arc<Node>>>,
    free: Vec<usize>,
}

impl ChildSlab {
    /// The slot the next `insert` will use.
    fn next_slot(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    fn insert(&mut self, child: Arc<Node>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(child);
                slot
            }
            None => {
                self.slots.push(Some(child));
                self.slots.len() - 1
            }
        }
    }

    /// Removes the child in `slot`; a slot emptied by `take_all` meanwhile is ignored.
    fn remove(&mut self, slot: usize) -> Option<Arc<Node>> {
        let child = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        if self.free.len() == self.slots.len() {
            // Every child is gone: give the memory back instead of keeping the high-water mark.
            self.slots = Vec::new();
            self.free = Vec::new();
        }
        Some(child)
    }

    fn take_all(&mut self) -> Vec<Arc<Node>> {
        self.free = Vec::new();
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

impl Node {
    fn new(cancelled: bool, reason: Option<SharedStr>, parent: Option<Arc<Node>>) -> Self {
        Node {
            cancelled: AtomicBool::new(cancelled),
            handles: AtomicUsize::new(1),
            state: Mutex::new(State {
                reason,
                parent,
                slot_in_parent: 0,
                children: ChildSlab::default(),
                waiters: WakerSlab::default(),
            }),
        }
    }
}

impl Token {
    /// Creates a new root token, not cancelled.
    pub fn new() -> Self {
        Token {
            node: Arc::new(Node::new(false, None, None)),
        }
    }

    /// Creates a child token: cancelled when this token is, but cancellable on its own.
    ///
    /// A child of an already cancelled token starts cancelled, with the parent's reason.
    pub fn child(&self) -> Token {
        let mut parent = lock(&self.node.state);
        // Relaxed: `cancelled` is only written under the lock we hold.
        if self.node.cancelled.load(Ordering::Relaxed) {
            let reason = parent.reason.clone();
            drop(parent);
            return Token {
                node: Arc::new(Node::new(true, reason, None)),
            };
        }
        let mut node = Node::new(false, None, Some(self.node.clone()));
        let slot = parent.children.next_slot();
        node.state
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .slot_in_parent = slot;
        let child = Arc::new(node);
        parent.children.insert(child.clone());
        Token { node: child }
    }

    /// Cancels this token and all its descendants, waking everything that waits on them.
    ///
    /// Cancelling twice is harmless; the first reason given wins.
    pub fn cancel(&self) {
        cancel_subtree(self.node.clone(), None);
    }

    /// Cancels this token and all its descendants, recording `reason` for them to read.
    pub fn cancel_with(&self, reason: impl Into<SharedStr>) {
        cancel_subtree(self.node.clone(), Some(reason.into()));
    }

    /// Returns `true` once this token (or one of its ancestors) has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        // Acquire pairs with the Release store in `cancel_subtree`, so a caller that sees `true`
        // also sees everything the canceller did before cancelling.
        self.node.cancelled.load(Ordering::Acquire)
    }

    /// The reason given to [`cancel_with`](Token::cancel_with), once cancelled with one.
    pub fn reason(&self) -> Option<SharedStr> {
        lock(&self.node.state).reason.clone()
    }

    /// A future that resolves once this token is cancelled.
    ///
    /// Cancel safety: dropping it before it resolves only removes its waker.
    pub fn cancelled(&self) -> Cancelled<'_> {
        Cancelled {
            node: &self.node,
            key: None,
        }
    }

    /// Runs `fut` until it completes (`Some(output)`) or this token is cancelled (`None`, and
    /// `fut` is dropped), whichever comes first; if both are ready, cancellation wins. The
    /// waiting task sleeps until one of them wakes it: no polling for the token.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_shutdown::Token;
    ///
    /// # fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    /// #     let mut fut = std::pin::pin!(fut);
    /// #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// let token = Token::new();
    /// assert_eq!(block_on(token.run_until_cancelled(async { 7 })), Some(7));
    /// token.cancel();
    /// assert_eq!(block_on(token.run_until_cancelled(std::future::pending::<()>())), None);
    /// ```
    pub async fn run_until_cancelled<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let mut cancelled = std::pin::pin!(self.cancelled());
        std::future::poll_fn(|cx| {
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            fut.as_mut().poll(cx).map(Some)
        })
        .await
    }

    /// Like [`cancelled`](Token::cancelled), but owning a clone of the token, for `'static`
    /// tasks.
    pub fn cancelled_owned(self) -> CancelledOwned {
        CancelledOwned {
            token: self,
            key: None,
        }
    }

    /// Wraps the token in a guard that cancels it when dropped, unless
    /// [`disarm`](DropGuard::disarm)ed.
    pub fn drop_guard(self) -> DropGuard {
        DropGuard { token: Some(self) }
    }

    /// How many live children are linked to this token (for tests and diagnostics).
    pub fn children_len(&self) -> usize {
        lock(&self.node.state).children.len()
    }
}

/// Cancels `root` and its whole subtree, one node at a time, without recursion.
fn cancel_subtree(root: Arc<Node>, reason: Option<SharedStr>) {
    let mut stack = vec![root];
    let mut is_root = true;
    while let Some(node) = stack.pop() {
        let (wakers, children, parent) = {
            let mut state = lock(&node.state);
            if node.cancelled.load(Ordering::Relaxed) {
                continue;
            }
            // Release: pairs with the Acquire in `is_cancelled` and in the futures' fast path.
            node.cancelled.store(true, Ordering::Release);
            state.reason = reason.clone();
            // The root keeps its parent link: it still sits in its parent's slab and must leave
            // it when its last handle drops. Descendants were just taken out of their parents'
            // slabs, so they forget their parents here.
            let parent = if is_root { None } else { state.parent.take() };
            (state.waiters.take_all(), state.children.take_all(), parent)
        };
        is_root = false;
        drop(parent);
        wake_all(wakers);
        stack.extend(children);
    }
}

impl Default for Token {
    fn default() -> Self {
        Token::new()
    }
}

impl Clone for Token {
    fn clone(&self) -> Self {
        // Relaxed: the handle being cloned keeps the count above zero, as with `Arc::clone`.
        self.node.handles.fetch_add(1, Ordering::Relaxed);
        Token {
            node: self.node.clone(),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // AcqRel: the last handle must see every other handle's effects before it unlinks.
        if self.node.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        unlink_last_handle(&self.node);
    }
}

/// Takes a node whose last handle dropped out of the tree, handing its children to its parent.
fn unlink_last_handle(node: &Arc<Node>) {
    loop {
        let parent = lock(&node.state).parent.clone();
        let Some(parent) = parent else {
            // A root (or detached/cancelled node): its children become roots.
            let children = lock(&node.state).children.take_all();
            for child in children {
                let old_parent = lock(&child.state).parent.take();
                drop(old_parent);
            }
            return;
        };
        let mut parent_state = lock(&parent.state);
        let mut state = lock(&node.state);
        if !state
            .parent
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &parent))
        {
            // Our parent unlinked itself and moved us meanwhile: start again.
            continue;
        }
        let removed = parent_state.children.remove(state.slot_in_parent);
        let children = state.children.take_all();
        let old_parent = state.parent.take();
        drop(state);
        // Relaxed: `parent.cancelled` is written only under the lock we hold.
        let orphans_to_cancel = if parent.cancelled.load(Ordering::Relaxed) {
            // The parent's cancellation already passed us by (or is passing now and will find
            // us empty): our children must hear it from us.
            Some((children, parent_state.reason.clone()))
        } else {
            for child in children {
                let mut child_state = lock(&child.state);
                child_state.slot_in_parent = parent_state.children.insert(child.clone());
                let previous = child_state.parent.replace(parent.clone());
                drop(child_state);
                drop(previous);
            }
            None
        };
        drop(parent_state);
        drop(removed);
        drop(old_parent);
        if let Some((children, reason)) = orphans_to_cancel {
            for child in children {
                cancel_subtree(child, reason.clone());
            }
        }
        return;
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Polls `node` for cancellation, parking the waker under `key` if it is not cancelled yet.
fn poll_cancelled(node: &Node, key: &mut Option<WaiterKey>, cx: &mut Context<'_>) -> Poll<()> {
    // Acquire: see `Token::is_cancelled`.
    if node.cancelled.load(Ordering::Acquire) {
        // Cancellation emptied the slab, so the key is stale and needs no removal.
        *key = None;
        return Poll::Ready(());
    }
    let mut state = lock(&node.state);
    // Relaxed: written only under the lock we hold.
    if node.cancelled.load(Ordering::Relaxed) {
        *key = None;
        return Poll::Ready(());
    }
    state.waiters.register(key, cx.waker());
    Poll::Pending
}

fn forget_waiter(node: &Node, key: &mut Option<WaiterKey>) {
    if let Some(key) = key.take() {
        lock(&node.state).waiters.remove(key);
    }
}

/// Future returned by [`Token::cancelled`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = weir_shutdown::Token::new();
/// token.cancel();
/// token.cancelled().await; // resolves at once: already cancelled
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled<'a> {
    node: &'a Arc<Node>,
    key: Option<WaiterKey>,
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        poll_cancelled(this.node, &mut this.key, cx)
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        forget_waiter(self.node, &mut self.key);
    }
}

impl fmt::Debug for Cancelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("registered", &self.key.is_some())
            .finish()
    }
}

/// Future returned by [`Token::cancelled_owned`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = weir_shutdown::Token::new();
/// let waiter = tokio::spawn(token.clone().cancelled_owned()); // 'static: owns its token
/// token.cancel();
/// waiter.await.unwrap();
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct CancelledOwned {
    token: Token,
    key: Option<WaiterKey>,
}

impl Future for CancelledOwned {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        poll_cancelled(&this.token.node, &mut this.key, cx)
    }
}

impl Drop for CancelledOwned {
    fn drop(&mut self) {
        forget_waiter(&self.token.node, &mut self.key);
    }
}

impl fmt::Debug for CancelledOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelledOwned")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Cancels its token when dropped — also while unwinding from a panic.
///
/// # Examples
///
/// ```
/// use weir_shutdown::Token;
///
/// let token = Token::new();
/// {
///     let _guard = token.clone().drop_guard();
/// }
/// assert!(token.is_cancelled());
///
/// let kept = Token::new();
/// let token = kept.clone().drop_guard().disarm();
/// drop(token);
/// assert!(!kept.is_cancelled());
/// ```
#[derive(Debug)]
pub struct DropGuard {
    token: Option<Token>,
}

impl DropGuard {
    /// Gives the token back without cancelling it.
    pub fn disarm(mut self) -> Token {
        // `token` is only taken here and in `drop`, and both consume the guard, so the default
        // is never used.
        self.token.take().unwrap_or_default()
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn dropped_children_leave_no_slot_behind() {
        let parent = Token::new();
        let children: Vec<_> = (0..100).map(|_| parent.child()).collect();
        assert_eq!(parent.children_len(), 100);
        drop(children);
        assert_eq!(parent.children_len(), 0);
        assert!(lock(&parent.node.state).children.slots.capacity() == 0);
    }

    #[test]
    fn grandchild_hears_grandparent_after_middle_token_drops() {
        let root = Token::new();
        let middle = root.child();
        let leaf = middle.child();
        drop(middle);
        assert_eq!(root.children_len(), 1, "the leaf moved up to the root");
        root.cancel();
        assert!(leaf.is_cancelled());
    }

    #[test]
    fn child_of_cancelled_token_starts_cancelled_with_reason() {
        let root = Token::new();
        root.cancel_with("deadline");
        let child = root.child();
        assert!(child.is_cancelled());
        assert_eq!(child.reason().as_deref(), Some("deadline"));
        assert_eq!(root.children_len(), 0);
    }

    #[test]
    fn cancelling_a_child_leaves_the_parent_running() {
        let root = Token::new();
        let child = root.child();
        child.cancel();
        assert!(child.is_cancelled());
        assert!(!root.is_cancelled());
        drop(child);
        assert_eq!(root.children_len(), 0);
    }

    #[test]
    fn cancelled_future_unregisters_on_drop() {
        let token = Token::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut fut = Box::pin(token.cancelled());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(lock(&token.node.state).waiters.len(), 1);
        drop(fut);
        assert_eq!(lock(&token.node.state).waiters.len(), 0);
    }

    #[test]
    fn first_reason_wins() {
        let token = Token::new();
        token.cancel_with("first");
        token.cancel_with("second");
        assert_eq!(token.reason().as_deref(), Some("first"));
    }

    #[test]
    fn disarmed_guard_does_not_cancel() {
        let token = Token::new();
        let back = token.clone().drop_guard().disarm();
        drop(back);
        assert!(!token.is_cancelled());
    }
}
