// Command buildweed builds the SeaweedFS server that package s3test runs in
// tests, once per machine, and prints the path of the cached binary. Run
// it before the tests so that the first build, which takes many minutes,
// does not count against a test's timeout:
//
//	go run ./internal/s3test/buildweed
package main

import (
	"fmt"
	"log"

	"github.com/parley-chat/parley/internal/s3test"
)

func main() {
	bin, err := s3test.Binary(log.Printf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(bin)
}
