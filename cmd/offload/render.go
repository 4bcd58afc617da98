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

// startSpinner shows a spinner with msg and the seconds elapsed on stderr
// when it is an interactive terminal, until c.stopSpin.
func (c *cli) startSpinner(msg string) {
	if !c.spin {
		return
	}
	t := time.NewTicker(spinnerInterval)
	stop := drawSpinner(c.stderr, msg, time.Now, t.C)
	var once sync.Once
	c.stopSpin = func() {
		once.Do(func() {
			t.Stop()
			stop()
		})
	}
}

// drawSpinner draws "⠋ msg… 3s" on w at every tick until the returned stop
// is called; stop erases the line, waits for the drawing goroutine and may
// be called more than once. now and tick are the clock, for tests.
func drawSpinner(w io.Writer, msg string, now func() time.Time, tick <-chan time.Time) (stop func()) {
	frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
	start := now()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for i := 0; ; i++ {
			elapsed := now().Sub(start) / time.Second
			fmt.Fprintf(w, "\r%s %s… %ds\033[K", frames[i%len(frames)], msg, elapsed)
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-tick:
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
