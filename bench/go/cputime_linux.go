package main

import (
	"runtime"
	"syscall"
	"unsafe"
)

// clockThreadCPUTimeID is Linux's CLOCK_THREAD_CPUTIME_ID.
const clockThreadCPUTimeID = 3

// pinThread locks the calling goroutine to its OS thread, so the thread CPU clock measures the
// goroutine that does the inserts. (Go has no portable per-goroutine CPU clock.)
func pinThread() bool {
	runtime.LockOSThread()
	return true
}

// threadCPUNanos is the OS thread's CPU time (user + system) in nanoseconds. GC work done by
// this goroutine (mark assists) counts; GC work on Go's background worker threads does not.
func threadCPUNanos() int64 {
	var ts syscall.Timespec
	_, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic(errno)
	}
	return ts.Nano()
}
