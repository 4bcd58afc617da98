package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/term"

	"github.com/offload-app/offload"
)

const spinnerInterval = 100 * time.Millisecond

// printTree prints steps as an indented tree: top-level steps numbered,
// substeps as bullets two columns deeper per level.
func printTree(w io.Writer, steps []offload.Step, indent string) {
	for i, s := range steps {
		if indent == "" {
			fmt.Fprintf(w, "%d. %s\n", i+1, cleanLine(s.Title))
			printTree(w, s.Substeps, "   ")
			continue
		}
		fmt.Fprintf(w, "%s- %s\n", indent, cleanLine(s.Title))
		printTree(w, s.Substeps, indent+"  ")
	}
}

// cleanLine makes server-supplied text safe for one terminal line: control
// characters (escape sequences included) become spaces.
func cleanLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
}

// isTerminal reports whether w is a terminal. Buffers and pipes are not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// startSpinner draws a spinner with msg on w until the returned stop is
// called; stop erases it and may be called more than once.
func startSpinner(w io.Writer, msg string, every time.Duration) (stop func()) {
	frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			fmt.Fprintf(w, "\r%s %s…", frames[i%len(frames)], msg)
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
}
