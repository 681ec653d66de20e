--- bio.embl: streaming EMBL reader (and, through bio._insdc_writer, writer).
--
--   for rec in embl.records("X56734.embl") do print(rec.id, rec.length, #rec.features) end
--
-- The same record tables as bio.genbank, with the values Biopython 1.88's
-- SeqIO.parse(path, "embl") gives.  The feature table is read by the code
-- GenBank uses (bio._insdc); this module reads the ID line, the two-letter
-- header lines and the sequence.  Reference: docs/bio/embl.md.
local I = require "bio._insdc"

local M = {}

local sl, strip, rstrip, split, words = I.sl, I.strip, I.rstrip, I.split, I.words
local startswith, endswith, count, isdigit = I.startswith, I.endswith, I.count, I.isdigit
local sub, find = string.sub, string.find

local LENGTH_UNITS = I.set_of { "BP", "BP.", "AA", "AA." }

-- "1859 BP." -> the builder's size (EmblScanner._feed_seq_length).
local function seq_length(S, B, text)
  local parts = words(text or "")
  if #parts ~= 2 or not LENGTH_UNITS[parts[2]:upper()] then
    S.fail("invalid sequence length '%s'", tostring(text))
  end
  B:size(parts[1])
end

local function strip_all(list)
  for k, v in ipairs(list) do list[k] = strip(v) end
  return list
end

-- "ACC rest; of; fields" -> {"ACC", "rest", "of", "fields"} (the pre-2006 layouts).
local function space_then_semicolons(S, line)
  local body = sl(line, 5)
  local first, rest = body:match("^[ \t\r\n\v\f]*(%S+)[ \t\r\n\v\f]+(.*)$")
  if not first then S.fail("did not recognise the ID line layout") end
  local fields = { first }
  for _, f in ipairs(split(rest, ";")) do fields[#fields + 1] = f end
  return strip_all(fields)
end

local function sequence_version(B, field)
  local v = words(field)
  if #v == 2 and v[1] == "SV" and isdigit(v[2]) then B:version_suffix(v[2]) end
end

-- Residue type, then topology and molecule type when they share a field ("circular DNA").
local function residue_and_topology(B, field)
  B:residue_type(field)
  if find(field, "circular", 1, true) then
    B:topology("circular")
    B:molecule_type(strip((field:gsub("circular", ""))))
  elseif find(field, "linear", 1, true) then
    B:topology("linear")
    B:molecule_type(strip((field:gsub("linear", ""))))
  else
    B:molecule_type(strip(field))
  end
end

-- The ID line, in the layouts Biopython knows (EmblScanner._feed_first_line).
local function feed_first_line(S, B, line)
  local semis = count(sl(line, 5), ";")
  if semis == 6 then -- ID   X56734; SV 1; linear; mRNA; STD; PLN; 1859 BP.
    local f = strip_all(split(strip(sl(line, 5)), ";"))
    B:locus(f[1])
    B:accession(f[1])
    sequence_version(B, f[2])
    B:residue_type(f[3] .. " " .. f[4])
    B:topology(f[3])
    B:molecule_type(f[4])
    B:set("data_file_division", f[6])
    seq_length(S, B, f[7])
  elseif semis == 3 and endswith(rstrip(line), " SQ") then -- ID   NRP_AX000635; PRT; NR1; 15 SQ
    local f = strip_all(split(sub(strip(sl(line, 5)), 1, -4), ";"))
    if #f ~= 4 then S.fail("did not recognise the patent ID line layout") end
    B:locus(f[1])
    B:residue_type(f[2])
    B:set("data_file_division", f[3])
  elseif semis == 3 then -- ID   SC10H5 standard; DNA; PRO; 4870 BP.
    local f = space_then_semicolons(S, line)
    B:locus(f[1])
    residue_and_topology(B, f[3])
    B:set("data_file_division", f[4])
    seq_length(S, B, f[5])
  elseif semis == 2 then -- ID   DI500001       STANDARD;      PRT;   111 AA.  (KIPO)
    local f = space_then_semicolons(S, line)
    B:locus(f[1])
    seq_length(S, B, f[4])
  else
    S.fail("did not recognise the ID line layout")
  end
end

-- Two-letter codes whose text goes to one builder call (EmblScanner's consumer_dict).
local SIMPLE = { AC = "accession", SV = "version", DE = "definition", RG = "consrtm", RL = "journal",
                 OS = "organism", OC = "taxonomy" }

local function strip_right(s, ch) -- Python's s.rstrip(ch) for one character
  while sub(s, -1) == ch do s = sub(s, 1, -2) end
  return s
end

-- The header lines (EmblScanner._feed_header_lines); each line stands alone.
local function feed_header_lines(S, B, lines, nums)
  for k, line in ipairs(lines) do
    S.at = nums[k]
    local kind, data = strip(sub(line, 1, 5)), strip(sub(line, 6))
    if kind == "RN" then
      if data == "" then S.fail("empty RN line") end
      B:reference_num()
    elseif kind == "RP" then
      if strip(data) ~= "[-]" then -- KIPO patents write "RP   [-]"
        local parts = {}
        for _, b in ipairs(split(data, ",")) do
          if strip(b) ~= "" then parts[#parts + 1] = strip(I.replace(b, "-", " to ")) end
        end
        if not B.ref then S.fail("RP line before any RN line") end
        B:reference_bases("(bases " .. table.concat(parts, "; ") .. ")")
      end
    elseif kind == "RT" then
      if startswith(data, '"') then data = sub(data, 2) end
      if endswith(data, '";') then data = sub(data, 1, -3) end
      B:consume("title", data)
    elseif kind == "RX" then
      local parts = split(data, ";", 1)
      if #parts < 2 then S.fail("RX line without ';': '%s'", data) end
      local value = parts[2]
      if endswith(value, ".") then value = sub(value, 1, -2) end
      if parts[1] == "PUBMED" then B:consume("pubmed_id", strip(value)) end
    elseif kind == "CC" then
      B:comment({ data })
    elseif kind == "DR" then
      local parts = split(strip_right(data, "."), ";")
      if #parts > 1 then B:dblink(strip(parts[1]) .. ":" .. strip(parts[2])) end -- else Biopython warns
    elseif kind == "RA" then
      B:consume("authors", strip_right(data, ";"))
    elseif kind == "PR" then
      if startswith(data, "Project:") then B:project(strip_right(data, ";")) end
    elseif kind == "KW" then
      B:keywords(strip_right(data, ";"))
    elseif SIMPLE[kind] then
      B:consume(SIMPLE[kind], data)
    end
  end
end

local SEQUENCE_HEADERS = I.set_of { "SQ", "CO" }
local FIVE = "     "

local function is_seq_header(line) return SEQUENCE_HEADERS[rstrip(sub(line, 1, 5))] end

-- SQ/CO lines, then the sequence lines (bases in blocks, the position at the
-- end) up to "//" (EmblScanner.parse_footer).
local function parse_footer(S)
  local line = S.line
  if not is_seq_header(line) then S.fail("footer format unexpected: '%s'", rstrip(line)) end
  local misc = {}
  while is_seq_header(line) do
    misc[#misc + 1] = line
    line = S.readline()
    if line == nil then S.fail("premature end of file after '%s'", rstrip(misc[#misc])) end
    line = rstrip(line)
  end
  if not (sub(line, 1, 5) == FIVE or strip(line) == "//") then
    S.fail("unexpected content after SQ or CO line: '%s'", line)
  end
  local first = line -- Biopython checks the indentation of this line only
  local seq = {}
  while true do
    if line == nil then S.fail("premature end of file in sequence data") end
    line = strip(line)
    if line == "" then S.fail("blank line in sequence data") end
    if line == "//" then break end
    if sub(first, 1, 5) ~= FIVE then S.fail("problem with characters in header line, or incorrect header width") end
    local body, last = line:match("^(.-)[ \t\r\n\v\f]+(%S+)$")
    if body and isdigit(last) then
      seq[#seq + 1] = body
    elseif not isdigit(line) then -- a line with only the position has no bases
      seq[#seq + 1] = line -- no position at the end: Biopython warns
    end
    line = S.readline()
  end
  return misc, seq
end

-- CO (contig) and SQ lines (EmblScanner._feed_misc_lines).
local function feed_misc_lines(S, B, lines)
  local nxt = I.cursor(lines)
  for raw in nxt do
    local line = raw
    if startswith(line, "CO   ") then
      local contig = strip(sub(line, 6))
      while true do
        line = nxt()
        if line == "" then break end
        if not startswith(line, "CO   ") then S.fail("expected a CO (contig) continuation line, got '%s'", line) end
        contig = contig .. strip(sub(line, 6))
      end
      B:set("contig", contig)
    end
    if startswith(line, "SQ   Sequence ") then
      seq_length(S, B, split(strip_right(rstrip(sub(line, 15)), ";"), ";", 1)[1])
    end
  end
end

-- IMGT's ID line with 5 fields (_ImgtScanner._feed_first_line), e.g.
-- ID   HLA00001; SV 1; standard; DNA; HUM; 3503 BP.
local function imgt_first_line(S, B, line)
  if count(sl(line, 5), ";") ~= 5 then return feed_first_line(S, B, line) end
  local f = strip_all(split(strip(sl(line, 5)), ";"))
  B:locus(f[1])
  sequence_version(B, f[2])
  residue_and_topology(B, f[4])
  B:set("data_file_division", f[5])
  seq_length(S, B, f[6])
end

-- IMGT keys may run past column 21: "FT   KEY LOCATION" splits on the space,
-- else the key is columns 3-25 (_ImgtScanner.parse_features).
local function imgt_feature_start(S, line)
  if sub(line, 1, 2) ~= "FT" then S.fail("expected an FT line in the feature table") end
  local w = words(sub(line, 3))
  if #w == 2 then return w[1], w[2] end
  return strip(sl(line, 2, 25)), strip(sl(line, 25))
end

-- Lines start with a two-letter code; FT lines hold the feature table.
I.install(M, "bio.embl", "embl", {
  "ID   ", { "FH   Key             Location/Qualifiers", "FH" }, { "XX" }, "FT", SEQUENCE_HEADERS,
  feed_first_line, feed_header_lines, parse_footer, feed_misc_lines,
}, {
  imgt = {
    [2] = { "FH   Key             Location/Qualifiers", "FH   Key             Location/Qualifiers (from EMBL)",
            "FH   Key                 Location/Qualifiers", "FH" },
    [6] = imgt_first_line,
    feature_start = imgt_feature_start,
    fix_location = function(loc) return (loc:gsub("(%d+)>", ">%1")) end, -- "123>" is ">123"
  },
})

return M
