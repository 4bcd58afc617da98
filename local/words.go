package local

import (
	"strings"
	"unicode/utf8"
)

// maxWordBytes is longer than any word in the lists below: longer words are
// rejected before they are lower-cased.
const maxWordBytes = 16

// lowerASCII lower-cases the ASCII letters of w into buf, without
// allocating; ok is false when w is too long to be in any list.
func lowerASCII(w string, buf *[maxWordBytes]byte) (_ []byte, ok bool) {
	if len(w) > len(buf) {
		return nil, false
	}
	for i := range len(w) {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(w)], true
}

// The word lists are switches rather than maps: the package keeps no
// mutable globals, and a string switch compiles to a binary search.

// isVerb reports whether w (any case) is a common English task verb in its
// base form. It decides whether "and" starts a new clause ("… and call mom")
// or joins nouns ("milk and eggs"). Words that are just as often nouns after
// "and" (water, book, text, run) are left out on purpose.
func isVerb(w string) bool {
	var buf [maxWordBytes]byte
	b, ok := lowerASCII(w, &buf)
	if !ok {
		return false
	}
	switch string(b) {
	case "add", "answer", "apply", "arrange", "ask", "assemble", "bake", "bring", "brush",
		"build", "buy", "call", "cancel", "change", "charge", "check", "choose", "clean",
		"clear", "close", "collect", "contact", "cook", "copy", "create", "cut", "declutter",
		"decide", "delete", "deliver", "do", "download", "draft", "drink", "drive", "drop",
		"dust", "eat", "edit", "email", "e-mail", "empty", "exercise", "feed", "fetch", "file",
		"fill", "find", "finish", "fix", "fold", "follow", "get", "give", "go", "grab", "hang",
		"help", "hoover", "install", "invite", "iron", "join", "keep", "leave", "load",
		"look", "make", "meet", "message", "mop", "move", "mow", "note", "open", "order",
		"organize", "organise", "pack", "paint", "pay", "phone", "pick", "plan", "plant",
		"post", "practice", "practise", "prepare", "print", "put", "read", "rearrange",
		"register", "remove", "renew", "repair", "replace", "reply", "reschedule",
		"research", "respond", "return", "review", "rinse", "save", "scan", "schedule",
		"scrub", "see", "sell", "send", "set", "shop", "shower", "sign", "sort", "start",
		"stop", "store", "study", "submit", "sweep", "take", "talk", "tell", "throw", "tidy",
		"transfer", "try", "turn", "unload", "unpack", "update", "upload", "vacuum", "visit",
		"walk", "wash", "wipe", "write":
		return true
	}
	return false
}

// isNounVerb reports whether w is as often a noun as a verb: it counts as a
// verb only before a determiner (see isDeterminer).
func isNounVerb(w string) bool {
	var buf [maxWordBytes]byte
	b, ok := lowerASCII(w, &buf)
	if !ok {
		return false
	}
	switch string(b) {
	case "book", "water", "text", "run", "film", "mail", "ship", "cover", "back", "clean",
		"dry", "empty", "board", "head", "iron", "bin", "box", "bag", "list", "plan", "post":
		return true
	}
	return false
}

func isDeterminer(w string) bool {
	var buf [maxWordBytes]byte
	b, ok := lowerASCII(w, &buf)
	if !ok {
		return false
	}
	switch string(b) {
	case "a", "an", "the", "my", "your", "his", "her", "our", "their", "its", "this", "that",
		"these", "those", "some", "all", "both", "every", "each":
		return true
	}
	return false
}

// isAbbreviation reports whether a period after w (letters and dots, any
// case) belongs to an abbreviation or an initial rather than ending a
// sentence: "e.g.", "Dr.", "z.B.", "J.". Abbreviations that often end a
// sentence ("etc.", "p.m.") end it when a capital letter follows (nextUpper).
func isAbbreviation(w string, nextUpper bool) bool {
	if w == "" {
		return false
	}
	if utf8.RuneCountInString(w) == 1 {
		return true // an initial: "J. Smith"
	}
	var buf [maxWordBytes]byte
	b, ok := lowerASCII(w, &buf)
	if !ok {
		return false
	}
	switch string(b) {
	case "e.g", "i.e", "vs", "mr", "mrs", "ms", "dr", "st", "jr", "sr", "sra", "dra", "prof",
		"approx", "incl", "no", "nr", "ca", "z.b", "d.h", "u.a", "p.ej", "ej", "fig":
		return true
	case "etc", "a.m", "p.m", "bzw", "usw":
		return !nextUpper
	}
	return false
}

// kind is a family of tasks with its own concrete substeps. The order is the
// priority when a title mentions several: "Read emails" is about messages,
// "Change the address at the bank and the phone company" is paperwork.
type kind int

const (
	kindGeneric kind = iota
	kindMessage
	kindAppointment
	kindAdmin
	kindCall
	kindLaundry
	kindClean
	kindShop
	kindCook
	kindWrite
	kindStudy
	kindFix
	kindPack
	kindExercise
)

// kindOf picks the kind of a task from its English words; text in other
// languages gets the generic substeps. An opening verb with a kind of its
// own decides ("Call the bank", "Clean the phone"); "write" and "study" are
// too general to, so "Write an email" is a message.
func kindOf(title string) kind {
	lower := strings.ToLower(title)
	words := wordSpans(lower, nil)
	if len(words) == 0 {
		return kindGeneric
	}
	switch k := kindOfWord(lower[words[0].start:words[0].end]); k {
	case kindGeneric, kindMessage, kindWrite, kindStudy:
	default:
		return k
	}
	best := kindGeneric
	for _, w := range words {
		k := kindOfWord(lower[w.start:w.end])
		if k != kindGeneric && (best == kindGeneric || k < best) {
			best = k
		}
	}
	return best
}

func kindOfWord(w string) kind {
	switch w {
	case "email", "emails", "e-mail", "e-mails", "inbox", "message", "messages",
		"reply", "respond", "letter":
		return kindMessage
	case "call", "calls", "phone", "ring", "dial":
		return kindCall
	case "appointment", "appointments", "book", "schedule", "reschedule", "reserve",
		"dentist", "doctor", "haircut", "vet":
		return kindAppointment
	case "pay", "bill", "bills", "tax", "taxes", "invoice", "invoices", "budget",
		"paperwork", "form", "forms", "insurance", "renew", "bank", "refund", "receipts":
		return kindAdmin
	case "laundry", "clothes", "ironing", "iron":
		return kindLaundry
	case "clean", "cleaning", "tidy", "tidying", "declutter", "decluttering", "vacuum",
		"vacuuming", "hoover", "mop", "dust", "dusting", "scrub", "wipe", "dishes",
		"organize", "organise":
		return kindClean
	case "buy", "shop", "shopping", "groceries", "grocery", "supermarket", "order",
		"purchase", "errands":
		return kindShop
	case "cook", "cooking", "bake", "baking", "dinner", "lunch", "breakfast", "meal",
		"meals", "recipe":
		return kindCook
	case "write", "draft", "essay", "report", "article", "thesis", "chapter", "blog",
		"presentation", "slides":
		return kindWrite
	case "study", "studying", "learn", "revise", "homework", "exam", "exams", "course",
		"lecture", "practice", "practise":
		return kindStudy
	case "fix", "repair", "install", "assemble", "broken":
		return kindFix
	case "pack", "packing", "unpack", "suitcase", "moving":
		return kindPack
	case "exercise", "workout", "gym", "jog", "jogging", "yoga", "stretch", "swim", "walk":
		return kindExercise
	}
	return kindGeneric
}

// kit is the concrete substeps of a kind: two to get ready, two to do.
type kit struct {
	prep [2]string
	do   [2]string
}

// kitOf returns the kit of k; ok is false for kindGeneric, whose substeps
// are built from the task's own words instead.
func kitOf(k kind) (kit, bool) {
	switch k {
	case kindMessage:
		return kit{
			prep: [2]string{"Open a new draft or the message to answer", "Write one line about why you're writing"},
			do:   [2]string{"Add the details in a few short sentences", "Read it once and press send"},
		}, true
	case kindCall:
		return kit{
			prep: [2]string{"Find the number", "Write down the one thing you want to ask"},
			do:   [2]string{"Dial and say hello", "Write down what you agreed on"},
		}, true
	case kindAppointment:
		return kit{
			prep: [2]string{"Check your calendar for a free slot", "Find the booking page or phone number"},
			do:   [2]string{"Pick a time and confirm it", "Put it in your calendar with a reminder"},
		}, true
	case kindAdmin:
		return kit{
			prep: [2]string{"Find the letter, document or login you need", "Put it in front of you or open it on screen"},
			do:   [2]string{"Fill in the first field or line", "Save a copy or a screenshot when it's sent"},
		}, true
	case kindLaundry:
		return kit{
			prep: [2]string{"Gather the clothes into one pile", "Sort them into lights and darks"},
			do:   [2]string{"Start one load", "Fold the first five pieces"},
		}, true
	case kindClean:
		return kit{
			prep: [2]string{"Grab a trash bag and a basket for things that belong elsewhere", "Put on some music you like"},
			do:   [2]string{"Clear one surface first", "Put away what's in the basket"},
		}, true
	case kindShop:
		return kit{
			prep: [2]string{"Check what you already have", "Write a short list"},
			do:   [2]string{"Get the first thing on the list", "Put everything away when you're back"},
		}, true
	case kindCook:
		return kit{
			prep: [2]string{"Pick one recipe or idea", "Put the ingredients out on the counter"},
			do:   [2]string{"Start with the first step of the recipe", "Rinse the dishes while it cooks"},
		}, true
	case kindWrite:
		return kit{
			prep: [2]string{"Open a blank page and type a working title", "Write messy notes for five minutes"},
			do:   [2]string{"Turn the notes into a rough first paragraph", "Read it back and improve one sentence"},
		}, true
	case kindStudy:
		return kit{
			prep: [2]string{"Open the material at the right page", "Have a pen and paper ready"},
			do:   [2]string{"Work through it for ten minutes", "Write down one thing you learned"},
		}, true
	case kindFix:
		return kit{
			prep: [2]string{"Look up how it's done or find the manual", "Lay out the tools you need"},
			do:   [2]string{"Do the first step of the instructions", "Test that it works"},
		}, true
	case kindPack:
		return kit{
			prep: [2]string{"Grab a box or a bag", "Pick one category to start with"},
			do:   [2]string{"Pack that category", "Label the box or bag"},
		}, true
	case kindExercise:
		return kit{
			prep: [2]string{"Put on comfortable clothes and shoes", "Fill a water bottle"},
			do:   [2]string{"Warm up for two minutes", "Start at a gentle pace"},
		}, true
	}
	return kit{}, false
}
