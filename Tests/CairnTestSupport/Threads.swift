// Running a test body on a thread with the stack a member's threads get (8 MiB, Linux's default), so a test of
// deep input crashes exactly where a member would, whatever stack the test runner's own threads have.
import CMalloc
import Glibc

/// Runs `body` on a new thread with a stack of `stackBytes` and waits for it to finish.
package func onThread(stackBytes: Int = 8 << 20, _ body: @escaping () -> Void) {
    final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setstacksize(&attributes, stackBytes)
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    let created = pthread_create(&thread, &attributes, { context in
        let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
        box.body()
        return nil
    }, context)
    precondition(created == 0, "pthread_create failed: \(created)")
    pthread_join(thread, nil)
}

/// Bytes the process has allocated with malloc and not freed, in every arena, mmapped blocks included (glibc).
package func mallocBytesInUse() -> Int {
    let info = mallinfo2()
    return Int(info.uordblks) + Int(info.hblkhd)
}
