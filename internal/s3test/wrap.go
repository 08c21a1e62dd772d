package s3test

// Wrap runs run (a test binary's m.Run, or another Wrap around it), then
// stops the server if one was started, and returns run's code: for a
// TestMain that needs this package and another one that wraps m.Run
// (pgtest.Wrap).
func Wrap(run func() int) int {
	process.mu.Lock()
	process.running = true
	process.mu.Unlock()
	code := run()

	process.mu.Lock()
	defer process.mu.Unlock()
	process.running = false
	if process.srv != nil {
		process.srv.stop()
		process.srv = nil
	}
	return code
}
