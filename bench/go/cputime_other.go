//go:build !linux

package main

// pinThread reports that no per-thread CPU clock is wired up on this platform.
func pinThread() bool { return false }

// threadCPUNanos is 0 off Linux: the CPU columns then read 0.
func threadCPUNanos() int64 { return 0 }
