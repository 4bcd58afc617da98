package local

import (
	"reflect"
	"testing"
)

func splitTitles(text string) []string {
	var out []string
	for _, t := range splitTasks(text) {
		out = append(out, t.title)
	}
	return out
}

func TestSplitTasks(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"empty", "", nil},
		{"blank", " \n\t\r\n ", nil},
		{"one word", "taxes", []string{"Taxes"}},
		{"sentences", "Buy milk. Call mom! Pay rent? Done", []string{"Buy milk", "Call mom", "Pay rent", "Done"}},
		{"semicolons", "buy milk; call mom ; pay rent", []string{"Buy milk", "Call mom", "Pay rent"}},
		{"lines", "buy milk\r\ncall mom\n\n\npay rent", []string{"Buy milk", "Call mom", "Pay rent"}},
		{"bullets", "- buy milk\n* call mom\n• pay rent\n+ water plants\n– walk the dog",
			[]string{"Buy milk", "Call mom", "Pay rent", "Water plants", "Walk the dog"}},
		{"inline bullets", "buy milk • call mom • pay rent", []string{"Buy milk", "Call mom", "Pay rent"}},
		{"numbered", "1. buy milk\n2) call mom\n(3) pay rent\n10. water plants\n４．洗濯",
			[]string{"Buy milk", "Call mom", "Pay rent", "Water plants", "洗濯"}},
		{"lettered and circled", "a) buy milk\nB) call mom\n① pay rent\n② water plants",
			[]string{"Buy milk", "Call mom", "Pay rent", "Water plants"}},
		{"task list", "- [ ] buy milk\n- [x] call mom\n[X] pay rent", []string{"Buy milk", "Call mom", "Pay rent"}},
		{"step labels", "Step 1: buy milk\nstep 2 - call mom", []string{"Buy milk", "Call mom"}},
		{"headings", "# Weekend\nChores:\n- buy milk\nPaperwork\n1. pay rent\nCall mom",
			[]string{"Buy milk", "Pay rent", "Call mom"}},
		{"a verb line above a list is a task", "Call mom\n- buy milk", []string{"Call mom", "Buy milk"}},
		{"headings only", "# Weekend\nChores:", []string{"Weekend", "Chores"}},
		{"hashtag", "#work call the client", []string{"#work call the client"}},
		{"rules", "---\nbuy milk\n***", []string{"Buy milk"}},
		{"content that looks like a marker", "-5 degrees tonight\n3.5 kg flour\n*important* call",
			[]string{"-5 degrees tonight", "3.5 kg flour", "*Important* call"}},
		{"and then", "clean the kitchen and then do laundry", []string{"Clean the kitchen", "Do laundry"}},
		{"then", "clean the kitchen then do laundry, then call mom", []string{"Clean the kitchen", "Do laundry", "Call mom"}},
		{"and before a verb", "call mom and pay the rent", []string{"Call mom", "Pay the rent"}},
		{"and between nouns", "buy milk and eggs", []string{"Buy milk and eggs"}},
		{"and before a lone verb", "wash and dry", []string{"Wash and dry"}},
		{"and before a noun-verb", "call the bistro and book a table", []string{"Call the bistro", "Book a table"}},
		{"and before a noun", "sell books and book covers", []string{"Sell books and book covers"}},
		{"and I", "I'll call mom and I need to pay rent", []string{"Call mom", "Pay rent"}},
		{"and inside words", "Call Andrew about the brand new Anderson band", []string{"Call Andrew about the brand new Anderson band"}},
		{"case-insensitive", "Call mom AND THEN pay rent THEN relax", []string{"Call mom", "Pay rent", "Relax"}},
		{"after that", "call mom. After that, pay rent", []string{"Call mom", "Pay rent"}},
		{"after that meeting", "relax after that meeting", []string{"Relax after that meeting"}},
		{"afterwards and finally", "call mom, afterwards pay rent and finally relax", []string{"Call mom", "Pay rent", "Relax"}},
		{"finally inside", "I finally fixed the bike", []string{"I finally fixed the bike"}},
		{"next with comma", "Next, call mom", []string{"Call mom"}},
		{"next week", "next week call mom", []string{"Next week call mom"}},
		{"so with a verb", "The car needs tires, so book the garage", []string{"The car needs tires", "Book the garage"}},
		{"so without a comma", "so book the garage", []string{"Book the garage"}},
		{"comma list of verbs", "clean the kitchen, do laundry, call mom", []string{"Clean the kitchen", "Do laundry", "Call mom"}},
		{"comma list of nouns", "laundry, groceries, taxes", []string{"Laundry", "Groceries", "Taxes"}},
		{"comma list with a noun-verb", "write the chapter, email the professor, book flights",
			[]string{"Write the chapter", "Email the professor", "Book flights"}},
		{"comma list of things", "Buy milk, eggs, and bread", []string{"Buy milk, eggs, and bread"}},
		{"comma in prose", "When I get home, call mom", []string{"When I get home, call mom"}},
		{"thousands", "transfer 1,000 euros, pay 2,500 rent", []string{"Transfer 1,000 euros", "Pay 2,500 rent"}},
		{"filler", "I need to call mom. I have to pay rent. I should sleep. I want to read. Please water plants. Need to run. To relax",
			[]string{"Call mom", "Pay rent", "Sleep", "Read", "Water plants", "Run", "Relax"}},
		{"more filler", "Okay so I really need to call mom. Don't forget to pay rent. We'll see. I’m going to read. Maybe relax",
			[]string{"Call mom", "Pay rent", "See", "Read", "Relax"}},
		{"filler only", "I need to. Please. And then.", nil},
		{"filler is whole words", "Tomorrow call mom. Android update. Sofa cleaning. Pleased guests",
			[]string{"Tomorrow call mom", "Android update", "Sofa cleaning", "Pleased guests"}},
		{"first", "First, call mom. First aid kit", []string{"Call mom", "First aid kit"}},
		{"abbreviations", "Ask Dr. Smith about e.g. vitamin D. Then rest", []string{"Ask Dr. Smith about e.g. vitamin D", "Rest"}},
		{"etc at sentence end", "Buy milk, eggs etc. Call mom", []string{"Buy milk, eggs etc", "Call mom"}},
		{"decimals and times", "Pay 3.50 at 9 a.m. tomorrow", []string{"Pay 3.50 at 9 a.m. tomorrow"}},
		{"ellipsis", "call mom... pay rent… relax", []string{"Call mom", "Pay rent", "Relax"}},
		{"parenthesis", "Give notice (in writing!) to the landlord", []string{"Give notice (in writing)", "The landlord"}},
		{"duplicates", "Buy milk. buy milk! BUY MILK", []string{"Buy milk"}},
		{"spaces", "buy \t   milk  \u00a0 now", []string{"Buy milk now"}},
		{"german", "Wohnung putzen. Einkaufen gehen und dann Wäsche waschen!",
			[]string{"Wohnung putzen", "Einkaufen gehen und dann Wäsche waschen"}},
		{"german comma list", "Wohnung putzen, Wäsche waschen, einkaufen gehen",
			[]string{"Wohnung putzen", "Wäsche waschen", "Einkaufen gehen"}},
		{"japanese", "部屋を掃除する。洗濯をする！買い物に行く？", []string{"部屋を掃除する", "洗濯をする", "買い物に行く"}},
		{"chinese", "打扫房间；洗衣服。买菜", []string{"打扫房间", "洗衣服", "买菜"}},
		{"spanish", "¿Limpiar la cocina? ¡Llamar a mamá! pagar el alquiler.",
			[]string{"Limpiar la cocina", "Llamar a mamá", "Pagar el alquiler"}},
		{"turkish capital", "ılık su iç", []string{"Ilık su iç"}},
		{"emoji", "🧹 the kitchen then 📞 mom", []string{"🧹 the kitchen", "📞 mom"}},
		{"invalid utf8", "buy \xff milk\xc3", []string{"Buy milk"}},
		{"controls", "buy\x00milk\x1b now", []string{"Buy milk now"}},
		{"unicode line breaks", "buy milk\u2028call mom\u2029pay rent\u0085relax", []string{"Buy milk", "Call mom", "Pay rent", "Relax"}},
		{"c1 control", "buy\u0090milk", []string{"Buy milk"}},
		{"odd spaces", "buy\u00a0\u00a0milk\u3000now", []string{"Buy milk now"}},
		{"punctuation only", "!!! ??? ... ;;; ---", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := splitTitles(tc.text); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("splitTasks(%q)\n got %q\nwant %q", tc.text, got, tc.want)
			}
		})
	}
}

func TestSplitLongFragmentAtCommas(t *testing.T) {
	part := "and a rather long clause about one more thing to remember" // 58 code points
	text := part
	for range 7 {
		text += ", " + part
	}
	got := splitTasks(text)
	if len(got) < 2 {
		t.Fatalf("a %d-byte run-on sentence stayed %d fragment(s)", len(text), len(got))
	}
	for _, ts := range got {
		if n := len([]rune(ts.title)); n > longFragmentRunes {
			t.Errorf("fragment of %d code points: %q", n, ts.title)
		}
	}
}

func TestSplitTasksStopsReading(t *testing.T) {
	var text string
	for i := range 100 {
		text += "Task " + string(rune('A'+i%26)) + string(rune('a'+i/26)) + ".\n"
	}
	if n := len(splitTasks(text)); n != maxTasksRead {
		t.Errorf("read %d tasks, want %d", n, maxTasksRead)
	}
}

func TestActionable(t *testing.T) {
	got := splitTasks("My sister's birthday is on Sunday. I need to bake a cake. The car is dirty. Book a slot.")
	want := []task{
		{"My sister's birthday is on Sunday", false},
		{"Bake a cake", true},
		{"The car is dirty", false},
		{"Book a slot", true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got := splitTasks("- my sister's birthday"); !got[0].actionable {
		t.Error("a list item is not actionable")
	}
}

func TestChooseTasks(t *testing.T) {
	var ts []task
	for i := range 20 {
		ts = append(ts, task{title: string(rune('a' + i)), actionable: i%3 == 0})
	}
	got, more := chooseTasks(ts)
	// 7 actionable (a d g j m p s), then the first 4 others (b c e f), in order.
	want := []string{"a", "b", "c", "d", "e", "f", "g", "j", "m", "p", "s"}
	if !more || !reflect.DeepEqual(got, want) {
		t.Errorf("got %q more=%v, want %q more=true", got, more, want)
	}
	got, more = chooseTasks(ts[:maxTopSteps])
	if more || len(got) != maxTopSteps {
		t.Errorf("%d tasks that fit: got %d, more=%v", maxTopSteps, len(got), more)
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		title string
		want  kind
	}{
		{"Read emails", kindMessage},
		{"Call the dentist", kindCall},
		{"Book a dentist appointment", kindAppointment},
		{"Do the TAXES", kindAdmin},
		{"Wash clothes", kindLaundry},
		{"Clean the kitchen", kindClean},
		{"Buy groceries for dinner", kindShop},
		{"Cook dinner", kindCook},
		{"Write the report", kindWrite},
		{"Study for the exam", kindStudy},
		{"Fix the bike", kindFix},
		{"Pack the suitcase", kindPack},
		{"Go to the gym", kindExercise},
		{"Write an email to Bob", kindMessage},
		{"Change the address at the bank and the phone company", kindAdmin},
		{"Call the bank", kindCall},
		{"Clean the phone", kindClean},
		{"Give notice to the landlord (in writing)", kindGeneric},
		{"Wohnung putzen", kindGeneric},
		{"Recall the bookshelf", kindGeneric},
	}
	for _, tc := range tests {
		if got := kindOf(tc.title); got != tc.want {
			t.Errorf("kindOf(%q) = %d, want %d", tc.title, got, tc.want)
		}
	}
}
