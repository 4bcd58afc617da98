package local

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// longFragmentRunes is the length above which a fragment is cut again at
	// its commas: a run-on sentence is easier to start as several steps.
	longFragmentRunes = 200
	// maxTasksRead bounds the reading of long input: enough to choose the
	// most actionable maxTopSteps from a brain dump.
	maxTasksRead = 48
	// maxFragmentsRead bounds it when most fragments are duplicates.
	maxFragmentsRead = 4 * maxTasksRead
)

// task is one fragment of the input, cleaned.
type task struct {
	title string
	// actionable: a list item, a fragment that opens with a verb, or one
	// that followed "I need to" and the like. Narration ("My sister's
	// birthday is on Sunday") is not.
	actionable bool
}

// splitTasks turns free text into at most maxTasksRead cleaned tasks, in
// order of appearance, without case-insensitive duplicates. Headings
// ("# Moving", "Today:", a plain "Paperwork" above a list) name a list rather
// than being a step of it; they are used only when nothing else is left.
func splitTasks(text string) []task {
	lines := strings.Split(sanitize(text), "\n")
	c := collector{limit: maxTasksRead}
	var headings []string
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		heading := line[0] == '#' && listMarkerLen(line) > 0
		c.listItem = isListItem(line)
		line = stripListMarkers(line)
		if line == "" {
			continue
		}
		if heading || strings.HasSuffix(line, ":") || strings.HasSuffix(line, "：") ||
			(!c.listItem && nextIsListItem(lines[i+1:]) && isLabel(line)) {
			if len(headings) < maxTasksRead {
				headings = append(headings, line)
			}
			continue
		}
		if !c.addLine(line) {
			break
		}
	}
	if len(c.out) == 0 {
		c.listItem = false
		for _, h := range headings {
			if !c.addLine(h) {
				break
			}
		}
	}
	return c.out
}

// chooseTasks picks the titles of the top-level steps: all of them when
// they fit, else the first maxTopSteps-1 actionable ones (then the others),
// kept in their order; more says that some were left out.
func chooseTasks(ts []task) (titles []string, more bool) {
	n := maxTopSteps
	if len(ts) > maxTopSteps {
		n, more = maxTopSteps-1, true
	}
	keep := make([]bool, len(ts))
	kept := 0
	for _, want := range [...]bool{true, false} {
		for i, t := range ts {
			if kept < n && !keep[i] && t.actionable == want {
				keep[i] = true
				kept++
			}
		}
	}
	titles = make([]string, 0, n)
	for i, t := range ts {
		if keep[i] {
			titles = append(titles, t.title)
		}
	}
	return titles, more
}

// isListItem reports whether the trimmed line starts with a list marker and
// has content after it.
func isListItem(line string) bool {
	n := listMarkerLen(line)
	return n > 0 && n < len(line) && line[0] != '#'
}

func nextIsListItem(lines []string) bool {
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			return isListItem(l)
		}
	}
	return false
}

// isLabel reports whether a plain line reads like a list's title rather than
// a task: a few words, no sentence end, not opening with a verb.
func isLabel(line string) bool {
	return len(line) <= 80 && wordCount(line, 6) <= 5 && !strings.ContainsAny(line, ".!?。！？;") &&
		!opensWithVerb(line)
}

// sanitize makes any input safe to cut: valid UTF-8 only, bounded length,
// every kind of line break a "\n", and other control characters spaces.
func sanitize(s string) string {
	if len(s) > maxInputBytes {
		s = s[:maxInputBytes] // a rune cut in half is dropped just below
	}
	if isClean(s) {
		return s // the common case: no copy
	}
	s = strings.ToValidUTF8(s, "")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			return r
		case r == '\r', r == '\u2028', r == '\u2029', r == '\u0085':
			return '\n'
		case unicode.IsControl(r):
			return ' '
		}
		return r
	}, s)
}

// isClean reports whether sanitize would leave s as it is. It looks at bytes
// and decodes nothing, which keeps long non-Latin text cheap.
func isClean(s string) bool {
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case (b < 0x20 && b != '\n') || b == 0x7f:
			return false
		case b == 0xc2 && i+1 < len(s) && s[i+1] < 0xa0: // U+0080–U+009F
			return false
		case b == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9): // U+2028, U+2029
			return false
		}
	}
	return utf8.ValidString(s)
}

// collector gathers cleaned tasks until it holds limit of them or has read
// maxFragmentsRead fragments.
type collector struct {
	out      []task
	limit    int
	read     int    // fragments seen, duplicates and blanks included
	listItem bool   // the current line is a list item
	words    []span // scratch buffer for splitClauses
}

// addLine splits one line into bullets, sentences and clauses and adds them.
// It reports whether there is room for more.
func (c *collector) addLine(line string) bool {
	if !strings.Contains(line, "\xe2") { // the lead byte of every inline bullet
		if !splitSentences(line, c.addSentence) {
			return false
		}
		return c.room()
	}
	for piece := range strings.FieldsFuncSeq(line, isInlineBullet) {
		if !splitSentences(piece, c.addSentence) {
			return false
		}
	}
	return c.room()
}

func (c *collector) addSentence(s string) bool {
	if !isCommaList(s) {
		return c.addItem(s)
	}
	return eachCommaItem(s, c.addItem)
}

func (c *collector) addItem(s string) bool {
	if !hasASCIILetter(s) {
		return c.addClause(s) // every joiner is an English word
	}
	var ok bool
	c.words, ok = splitClauses(s, c.words[:0], c.addClause)
	return ok
}

func hasASCIILetter(s string) bool {
	for i := range len(s) {
		if c := s[i] | 0x20; 'a' <= c && c <= 'z' {
			return true
		}
	}
	return false
}

func (c *collector) addClause(s string) bool {
	if len(s) <= longFragmentRunes || utf8.RuneCountInString(s) <= longFragmentRunes {
		return c.add(s)
	}
	return splitLong(s, c.add)
}

func (c *collector) room() bool { return len(c.out) < c.limit && c.read < maxFragmentsRead }

// add cleans one fragment and keeps it unless it is empty or a duplicate.
// Kept titles are already cut to the contract's length, so later work on
// them is bounded.
func (c *collector) add(raw string) bool {
	c.read++
	f, wanted := cleanFragment(raw)
	if f == "" {
		return c.room()
	}
	if len(f) > maxTitleRunes {
		f = normalizeTitle(f)
	}
	for _, t := range c.out {
		// At most maxTasksRead to compare; the length check skips most.
		if len(t.title) == len(f) && (t.title == f || strings.EqualFold(t.title, f)) {
			return c.room()
		}
	}
	c.out = append(c.out, task{title: f, actionable: c.listItem || wanted || opensWithVerb(f)})
	return c.room()
}

func isInlineBullet(r rune) bool {
	switch r {
	case '•', '◦', '▪', '‣', '⁃', '●', '○':
		return true
	}
	return false
}

// stripListMarkers removes what makes a line a list item: bullets, numbers
// ("1.", "2)", "(3)", "①", "a)"), "Step 4:", task-list boxes and heading
// hashes, in any combination such as "- [ ] 1. ".
func stripListMarkers(line string) string {
	for range 4 {
		n := listMarkerLen(line)
		if n == 0 {
			break
		}
		line = strings.TrimSpace(line[n:])
	}
	return line
}

// listMarkerLen returns the byte length of the list marker at the start of
// line, or 0.
func listMarkerLen(line string) int {
	if line == "" {
		return 0
	}
	r, size := utf8.DecodeRuneInString(line)
	spaceAt := func(i int) bool { return i >= len(line) || line[i] == ' ' }
	switch {
	case r == '-' || r == '*' || r == '+' || r == '>' || r == '–' || r == '—':
		// Only with a space after: "-5 °C" and "*bold*" are content.
		if spaceAt(size) {
			return size
		}
		if r == '-' || r == '*' {
			// "---" and "***" are rules, not content.
			if strings.Trim(line, string(r)) == "" {
				return len(line)
			}
		}
		return 0
	case r == '#':
		// A Markdown heading; "#work" is a hashtag and stays.
		if n := len(line) - len(strings.TrimLeft(line, "#")); spaceAt(n) {
			return n
		}
		return 0
	case r == '[' && len(line) >= 3 && line[2] == ']' && strings.IndexByte(" xX", line[1]) >= 0 && spaceAt(3):
		return 3
	case r == '(' || r == '（':
		n := digitsLen(line[size:])
		if n == 0 {
			return 0
		}
		if c, cs := utf8.DecodeRuneInString(line[size+n:]); c == ')' || c == '）' {
			return size + n + cs
		}
		return 0
	case unicode.IsDigit(r):
		n := digitsLen(line)
		c, cs := utf8.DecodeRuneInString(line[n:])
		switch c {
		case '.':
			if spaceAt(n + cs) { // "3.5 kg flour" is content
				return n + cs
			}
		case ')', '）', '．', '、':
			return n + cs
		}
		return 0
	case r < utf8.RuneSelf && unicode.IsLetter(r) && len(line) >= 2 && line[1] == ')' && spaceAt(2):
		return 2
	case isNumberSymbol(r), isBoxOrCheck(r), isInlineBullet(r):
		return size
	case r == 's' || r == 'S':
		// "Step 4:", "step 2 -", "Step 3."
		if len(line) < 6 || !strings.EqualFold(line[:4], "step") || line[4] != ' ' {
			return 0
		}
		n := digitsLen(line[5:])
		if n == 0 {
			return 0
		}
		i := 5 + n
		if i < len(line) && strings.IndexByte(":.)-", line[i]) >= 0 {
			i++
		}
		if spaceAt(i) {
			return i
		}
	}
	return 0
}

// digitsLen returns the byte length of up to three leading digits.
func digitsLen(s string) int {
	n, count := 0, 0
	for _, r := range s {
		if !unicode.IsDigit(r) || count == 3 {
			break
		}
		n += utf8.RuneLen(r)
		count++
	}
	return n
}

func isNumberSymbol(r rune) bool {
	return (r >= '①' && r <= '⑳') || (r >= '❶' && r <= '➓') || (r >= '⓵' && r <= '⓾')
}

func isBoxOrCheck(r rune) bool {
	switch r {
	case '☐', '☑', '☒', '✓', '✔', '□', '■', '→', '➔', '➤', '▶', '►':
		return true
	}
	return false
}

// splitSentences cuts s after sentence ends: ". ", "! ", "? ", "… " (with a
// space or the end after them, so "3.50" stays whole), "。！？" and ";"
// (with or without a space). A period after an abbreviation or an initial
// ("e.g.", "Dr.", "J.") does not end a sentence. It stops when yield does.
func splitSentences(s string, yield func(string) bool) bool {
	start := 0
	for i := 0; i < len(s); {
		// Every sentence end is ASCII or has the lead byte E2, E3 or EF: skip
		// other bytes without decoding them.
		if b := s[i]; b >= utf8.RuneSelf && b != 0xe2 && b != 0xe3 && b != 0xef {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		next := i + size
		switch r {
		case '。', '！', '？', '；', ';', '．', '｡':
			if !yield(s[start:i]) {
				return false
			}
			start = next
		case '.', '!', '?', '…':
			for next < len(s) {
				r2, n := utf8.DecodeRuneInString(s[next:])
				if !isSentenceEnd(r2) && !isCloser(r2) {
					break
				}
				next += n
			}
			if next < len(s) {
				r2, _ := utf8.DecodeRuneInString(s[next:])
				if !unicode.IsSpace(r2) {
					break
				}
			}
			if r == '.' && next-i == 1 && isAbbreviation(lastWord(s[start:i]), startsUpper(s[next:])) {
				break
			}
			if !yield(s[start:i]) {
				return false
			}
			start = next
		}
		i = next
	}
	return yield(s[start:])
}

func startsUpper(s string) bool {
	r, _ := utf8.DecodeRuneInString(strings.TrimLeftFunc(s, unicode.IsSpace))
	return unicode.IsUpper(r)
}

func isSentenceEnd(r rune) bool { return r == '.' || r == '!' || r == '?' || r == '…' }

func isCloser(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '”', '’', '»', '」', '』', '）':
		return true
	}
	return false
}

// lastWord returns the letters and dots at the end of s: "e.g" for "see e.g".
func lastWord(s string) string {
	i := len(s)
	for i > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:i])
		if r != '.' && !unicode.IsLetter(r) {
			break
		}
		i -= n
	}
	return s[i:]
}

// span is a word's byte range in a clause.
type span struct{ start, end int }

// splitClauses cuts a sentence at clause joiners: "then" and "and then"
// always; "and" (and ", so", ", but") before a verb or "I"; "finally",
// "afterwards", "after that" and "next" only where they open a clause or
// stand before a comma, so "I finally did it" and "next week" stay whole.
// Words are matched whole and case-insensitively: "Andrew" and "brand" hold
// no "and". words is a scratch buffer, returned for reuse.
func splitClauses(s string, words []span, yield func(string) bool) ([]span, bool) {
	words = wordSpans(s, words)
	is := func(k int, w string) bool {
		return k < len(words) && strings.EqualFold(s[words[k].start:words[k].end], w)
	}
	start := 0
	// opens reports whether the joiner at words[k:end] opens a clause: no
	// word of this clause before it, or a comma before or after it.
	opens := func(k, end int) bool {
		return k == 0 || words[k-1].end <= start ||
			precededByComma(s[:words[k].start]) || followedByComma(s[words[end-1].end:])
	}
	var buf [10]byte
	for k := 0; k < len(words); k++ {
		w := s[words[k].start:words[k].end]
		if len(w) < 2 || len(w) > len(buf) {
			continue // every joiner is 2–10 ASCII letters
		}
		for i := range len(w) {
			buf[i] = w[i] | 0x20 // ASCII lower case; other bytes match no joiner
		}
		n := 0 // words the joiner takes
		switch string(buf[:len(w)]) {
		case "then":
			n = 1
		case "and":
			n = andJoinerLen(s, words, k)
		case "so", "but":
			// ", so book the garage": a comma and a verb make it a new clause.
			if precededByComma(s[:words[k].start]) {
				n = andJoinerLen(s, words, k)
			}
		case "after":
			if is(k+1, "that") && opens(k, k+2) {
				n = 2
			}
		case "afterwards", "afterward", "finally", "lastly":
			if opens(k, k+1) {
				n = 1
			}
		case "next":
			if followedByComma(s[words[k].end:]) {
				n = 1
			}
		}
		if n == 0 {
			continue
		}
		if !yield(s[start:words[k].start]) {
			return words, false
		}
		start = words[k+n-1].end
		k += n - 1
	}
	return words, yield(s[start:])
}

// andJoinerLen returns how many words of the "and" at words[k] make a
// joiner: 0 when it joins nouns ("milk and eggs", "salt and pepper").
func andJoinerLen(s string, words []span, k int) int {
	is := func(i int, w string) bool {
		return i < len(words) && strings.EqualFold(s[words[i].start:words[i].end], w)
	}
	switch {
	case is(k+1, "then"), is(k+1, "finally"), is(k+1, "afterwards"), is(k+1, "afterward"), is(k+1, "lastly"):
		return 2
	case is(k+1, "after") && is(k+2, "that"):
		return 3
	case is(k+1, "next") && followedByComma(s[words[k+1].end:]):
		return 2
	}
	// A clause needs a verb and something after it: "and call mom", not "and call".
	if len(words)-(k+1) < 2 {
		return 0
	}
	if is(k+1, "also") && verbAt(s, words, k+2) {
		return 2
	}
	if is(k+1, "i") || verbAt(s, words, k+1) {
		return 1
	}
	return 0
}

// verbAt reports whether words[k] is a verb in this place: a task verb, or
// a word such as "book" or "water" that is a verb when an article or a
// possessive follows ("book a table", not "books and book covers").
func verbAt(s string, words []span, k int) bool {
	if k >= len(words) {
		return false
	}
	w := s[words[k].start:words[k].end]
	if isVerb(w) {
		return true
	}
	return k+1 < len(words) && isNounVerb(w) && isDeterminer(s[words[k+1].start:words[k+1].end])
}

// wordSpans appends the spans of s's words: runs of letters, digits, marks
// and inner apostrophes or hyphens.
func wordSpans(s string, words []span) []span {
	in := false
	for i, r := range s {
		var w bool
		if r < utf8.RuneSelf {
			w = ('a' <= r|0x20 && r|0x20 <= 'z') || ('0' <= r && r <= '9') ||
				(in && (r == '\'' || r == '-' || r == '_'))
		} else {
			w = unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || (in && r == '’')
		}
		switch {
		case w && !in:
			words = append(words, span{start: i})
			in = true
		case !w && in:
			words[len(words)-1].end = i
			in = false
		}
	}
	if in {
		words[len(words)-1].end = len(s)
	}
	return words
}

func precededByComma(s string) bool {
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	r, _ := utf8.DecodeLastRuneInString(s)
	return r == ',' || r == '，' || r == '、' || r == ':' || r == '—' || r == '–'
}

func followedByComma(s string) bool {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	r, _ := utf8.DecodeRuneInString(s)
	return r == ',' || r == '，' || r == '、'
}

// splitLong cuts a run-on fragment at its commas into pieces of at most about
// longFragmentRunes; a piece that is still too long is truncated later.
func splitLong(s string, yield func(string) bool) bool {
	start, last := 0, 0 // current piece; end of its last whole comma part
	runes := 0
	for i, r := range s {
		runes++
		if r != ',' && r != '，' && r != '、' {
			continue
		}
		if runes > longFragmentRunes && last > start {
			if !yield(s[start:last]) {
				return false
			}
			start = last
			runes = utf8.RuneCountInString(s[start:i]) + 1
		}
		last = i
	}
	if runes > longFragmentRunes && last > start {
		if !yield(s[start:last]) {
			return false
		}
		start = last
	}
	return yield(s[start:])
}

// cleanFragment trims a fragment, strips leading filler ("I need to",
// "please", "then") and stray punctuation, closes a parenthesis left open by
// the sentence split, and capitalises the first letter. It returns "" for a
// fragment with nothing to do in it; wanted says a filler such as "I need
// to" marked it as something to do.
func cleanFragment(s string) (string, bool) {
	s, wanted := trimFiller(s)
	if strings.IndexFunc(s, isContent) < 0 {
		return "", false
	}
	if strings.Contains(s, "  ") || hasOddSpace(s) {
		s = strings.Join(strings.Fields(s), " ")
	}
	if strings.Count(s, "(") > strings.Count(s, ")") {
		s += ")"
	}
	return capitalizeFirst(s), wanted
}

// trimFiller strips stray punctuation at both ends and leading filler
// phrases until none is left. wanted says one of them was a phrase of
// intent ("I need to", "please").
func trimFiller(s string) (_ string, wanted bool) {
	for range 8 {
		before := s
		s = trimLeadingJunk(s)
		s = strings.TrimRightFunc(s, isTrailingJunk)
		var w bool
		s, w = stripFiller(s)
		wanted = wanted || w
		if s == before {
			break
		}
	}
	return s, wanted
}

// isCommaList reports whether s is a list of tasks separated by commas: two
// or more items that each open with a verb ("clean the kitchen, do laundry,
// call mom"; after a first verb, "book" and the like count as verbs), or three or more short items and no verb ("Wäsche, Einkauf,
// Steuer"). "Buy milk, eggs, bread" is one task with a list of things in it,
// and "When I get home, call mom" is one sentence.
func isCommaList(s string) bool {
	if !strings.Contains(s, ",") && !strings.Contains(s, "，") && !strings.Contains(s, "、") {
		return false
	}
	items, verbs, short := 0, 0, 0
	eachCommaItem(s, func(item string) bool {
		item, _ = trimFiller(item)
		if item == "" {
			return true
		}
		items++
		// "book flights" after "write the chapter, email the professor"
		// reads as a verb, too.
		if w := firstWord(item); isVerb(w) || (verbs > 0 && isNounVerb(w)) {
			verbs++
		}
		if wordCount(item, 4) <= 3 {
			short++
		}
		return true
	})
	return (items >= 2 && verbs == items) || (items >= 3 && verbs == 0 && short == items)
}

// eachCommaItem calls fn with the parts of s between commas, leaving
// thousands separators ("1,000") alone. It stops when fn does.
func eachCommaItem(s string, fn func(string) bool) bool {
	start := 0
	for i, r := range s {
		if !isComma(r) {
			continue
		}
		if r == ',' && i > 0 && i+1 < len(s) && isASCIIDigit(s[i-1]) && isASCIIDigit(s[i+1]) {
			continue
		}
		if !fn(s[start:i]) {
			return false
		}
		start = i + utf8.RuneLen(r)
	}
	return fn(s[start:])
}

func isComma(r rune) bool { return r == ',' || r == '，' || r == '、' }

func isASCIIDigit(b byte) bool { return b >= '0' && b <= '9' }

// firstWord returns the leading run of letters (and inner apostrophes) of s.
func firstWord(s string) string {
	for i, r := range s {
		if !unicode.IsLetter(r) && !(i > 0 && (r == '\'' || r == '’')) {
			return s[:i]
		}
	}
	return s
}

// opensWithVerb reports whether s starts with a verb (see verbAt).
func opensWithVerb(s string) bool {
	w := firstWord(s)
	if isVerb(w) {
		return true
	}
	return isNounVerb(w) && isDeterminer(firstWord(strings.TrimLeft(s[len(w):], " ")))
}

// wordCount counts the space-separated words of s, up to limit.
func wordCount(s string, limit int) int {
	n, in := 0, false
	for _, r := range s {
		sp := unicode.IsSpace(r)
		if !sp && !in {
			if n++; n == limit {
				return n
			}
		}
		in = !sp
	}
	return n
}

// trimLeadingJunk cuts spaces and stray punctuation from the start of s; a
// dash or star only as a loose marker ("- ", "**"), so "-5 °C" and
// "*important*" keep theirs.
func trimLeadingJunk(s string) string {
	for s != "" {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case unicode.IsSpace(r) || strings.ContainsRune(",;:.!?¿¡…、，；：。！？)]}>", r):
		case r == '-' || r == '*' || r == '–' || r == '—':
			if n < len(s) && !unicode.IsSpace(rune(s[n])) && s[n] != s[0] {
				return s
			}
		default:
			return s
		}
		s = s[n:]
	}
	return s
}

func isTrailingJunk(r rune) bool {
	return unicode.IsSpace(r) || strings.ContainsRune(",;:.-–—…、，；：。([{<", r)
}

func isContent(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.So, r)
}

// hasOddSpace reports whether s has a space other than " ": U+00A0, U+3000
// and the like (control characters are gone after sanitize). It decodes
// only at the lead bytes that such spaces have.
func hasOddSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0xc2, 0xe1, 0xe2, 0xe3:
			if r, _ := utf8.DecodeRuneInString(s[i:]); r != ' ' && unicode.IsSpace(r) {
				return true
			}
		}
	}
	return false
}

// stripFiller removes one leading filler phrase, matched case-insensitively
// and as whole words ("Tomorrow" keeps its "to"). intent says it was a
// phrase of intent ("I really need to", "please", "remember to") rather than
// a joiner ("and", "then") or a hedge ("okay", "maybe").
func stripFiller(s string) (_ string, intent bool) {
	if s == "" || !strings.ContainsRune("adfghimnoprstw", rune(s[0]|0x20)) {
		return s, false // no filler starts with this letter: the common case
	}
	if rest, ok := cutIntent(s); ok {
		return rest, true
	}
	for _, f := range [...]struct {
		phrase string
		intent bool
	}{
		{"don't forget to", true}, {"don’t forget to", true}, {"remember to", true},
		{"need to", true}, {"have to", true}, {"got to", true}, {"gotta", true}, {"please", true},
		{"and", false}, {"also", false}, {"then", false}, {"so", false}, {"to", false},
		{"okay", false}, {"ok", false}, {"maybe", false}, {"well,", false},
		{"first of all,", false}, {"firstly,", false}, {"first,", false},
	} {
		if rest, ok := cutPhrase(s, f.phrase); ok {
			return rest, f.intent
		}
	}
	return s, false
}

// cutIntent cuts "I need to", "we should", "I really have to", "I'll",
// "I'm going to" and the like: a subject, at most one adverb, a modal.
func cutIntent(s string) (string, bool) {
	if c := s[0] | 0x20; c != 'i' && c != 'w' {
		return s, false
	}
	for _, p := range [...]string{"i'll", "i’ll", "we'll", "we’ll"} {
		if rest, ok := cutPhrase(s, p); ok {
			return rest, true
		}
	}
	subjects := [...]struct{ subject, then string }{
		{"i'm", "going to"}, {"i’m", "going to"}, {"we're", "going to"}, {"we’re", "going to"},
		{"i've", "got to"}, {"i’ve", "got to"}, {"i'd", "like to"}, {"i’d", "like to"},
		{"i", ""}, {"we", ""},
	}
	for _, sub := range subjects {
		rest, ok := cutPhrase(s, sub.subject)
		if !ok {
			continue
		}
		for _, adv := range [...]string{"really", "still", "also", "just", "definitely", "probably",
			"absolutely", "urgently", "finally", "seriously", "actually", "totally", "desperately"} {
			if r, ok := cutPhrase(rest, adv); ok {
				rest = r
				break
			}
		}
		if sub.then != "" {
			return cutPhrase(rest, sub.then)
		}
		for _, modal := range [...]string{"need to", "have to", "should", "want to", "must", "will",
			"gotta", "got to", "am going to", "would like to", "would love to", "ought to", "can",
			"could"} {
			if r, ok := cutPhrase(rest, modal); ok {
				return r, true
			}
		}
		return s, false
	}
	return s, false
}

// cutPhrase cuts phrase (lower case) from the start of s when it stands
// there as whole words, and returns the rest with its leading spaces.
func cutPhrase(s, phrase string) (string, bool) {
	n := len(phrase)
	// The first byte settles most cases before the slower EqualFold.
	if len(s) < n || s[0]|0x20 != phrase[0] || !strings.EqualFold(s[:n], phrase) {
		return s, false
	}
	if len(s) > n && s[n] != ' ' && s[n] != ',' && phrase[n-1] != ',' {
		return s, false
	}
	return strings.TrimLeft(s[n:], " "), true
}

// capitalizeFirst upper-cases the first letter if nothing but punctuation
// ("¿", "(", quotes) comes before it; "#work" and "@sam" stay as written.
func capitalizeFirst(s string) string {
	for i, r := range s {
		if unicode.IsLetter(r) {
			u := unicode.ToTitle(r)
			if u == r {
				return s
			}
			return s[:i] + string(u) + s[i+utf8.RuneLen(r):]
		}
		if !unicode.IsPunct(r) || r == '#' || r == '@' {
			return s
		}
	}
	return s
}
