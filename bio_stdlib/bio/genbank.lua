--- bio.genbank: streaming GenBank reader (and, through bio._insdc_writer, writer).
--
--   for rec in genbank.records("NC_005816.gb") do print(rec.id, rec.length, #rec.features) end
--
-- Records are plain tables (id, name, description, seq, length, dbxrefs,
-- annotations, features) with the values Biopython 1.88's
-- SeqIO.parse(path, "genbank") gives; feature locations are the location
-- text (whitespace removed) as Bio.GenBank's record parser gives it.  Files
-- may be gzip/BGZF-compressed.  Malformed input raises where Biopython
-- raises, naming the line.  Reference: docs/bio/genbank.md.
local I = require "bio._insdc"

local M = {}

local sl, strip, rstrip, split, words = I.sl, I.strip, I.rstrip, I.split, I.words
local startswith, contains, count = I.startswith, I.contains, I.count
local sub, find = string.sub, string.find

local UNITS = I.set_of { " bp ", " aa ", " rc " }
local TOPOLOGY = I.set_of { "", "linear", "circular" }
local STRAND = I.set_of { "   ", "ss-", "ds-", "ms-" }
local AA_BP = I.set_of { "aa", "bp" }
local SPACER = string.rep(" ", 12)

-- "NAME   LENGTH" -> name, length (Biopython's column-based LOCUS parsing).
local function name_and_length(S, field)
  local parts = split(I.collapse_spaces(field), " ")
  if #parts > 2 then S.fail("cannot parse the name and length in the LOCUS line") end
  if #parts == 1 then S.fail("name and length collide in the LOCUS line") end
  return parts[1], parts[2]
end

-- A date at columns a..a+10 is parsed only with '-' at the two places
-- Biopython checks (otherwise it warns and leaves it out).
local function date_ok(line, a)
  return strip(sl(line, a, a + 11)) ~= "" and sl(line, a + 2, a + 3) == "-" and sl(line, a + 6, a + 7) == "-"
end

-- The LOCUS line (GenBankScanner._feed_first_line): the old and new column
-- layouts, then the space-separated variants Biopython tolerates.
local function feed_first_line(S, B, line)
  if sl(line, 0, 12) ~= "LOCUS       " then S.fail("LOCUS line does not start correctly") end
  if UNITS[sl(line, 29, 33)] and sl(line, 55, 62) == "       " then
    if sl(line, 41, 42) ~= " " then S.fail("LOCUS line does not contain space at position 42") end
    if not TOPOLOGY[strip(sl(line, 42, 51))] then
      S.fail("LOCUS line does not contain valid entry (linear, circular, ...)")
    end
    if sl(line, 51, 52) ~= " " then S.fail("LOCUS line does not contain space at position 52") end
    local name, length = name_and_length(S, sl(line, 12, 29))
    B:locus(name)
    B:size(length)
    local rt = strip(sl(line, 33, 51))
    B:residue_type((rt == "" and sl(line, 29, 33) == " aa ") and "PROTEIN" or rt)
    B:molecule_type(strip(sl(line, 33, 41)))
    B:topology(strip(sl(line, 42, 51)))
    B:set("data_file_division", sl(line, 52, 55))
    if date_ok(line, 62) then B:set("date", sl(line, 62, 73)) end
    return
  end
  if UNITS[sl(line, 40, 44)] and TOPOLOGY[strip(sl(line, 54, 64))] then
    if #line < 79 then line = line .. string.rep(" ", 79 - #line) end
    if not STRAND[sl(line, 44, 47)] then
      local parts = words(sl(line, 12))
      if #parts < 2 then S.fail("LOCUS line does not have valid strand type and minimal fallback parsing failed") end
      B:locus(parts[1]) -- Biopython warns and keeps only the name and size
      B:size(parts[2])
      return
    end
    local mt = strip(sl(line, 47, 54)):upper()
    if not (mt == "" or contains(mt, "DNA") or contains(mt, "RNA")) then
      S.fail("LOCUS line does not contain valid sequence type (DNA, RNA, ...)")
    end
    if sl(line, 54, 55) ~= " " then S.fail("LOCUS line does not contain space at position 55") end
    if not TOPOLOGY[strip(sl(line, 55, 63))] then
      S.fail("LOCUS line does not contain valid entry (linear, circular, ...)")
    end
    if sl(line, 63, 64) ~= " " then S.fail("LOCUS line does not contain space at position 64") end
    if sl(line, 67, 68) ~= " " then S.fail("LOCUS line does not contain space at position 68") end
    local name, length = name_and_length(S, sl(line, 12, 40))
    B:locus(name)
    B:size(length)
    if strip(sl(line, 44, 54)) == "" and sl(line, 40, 44) == " aa " then
      B:residue_type(strip("PROTEIN " .. sl(line, 54, 63)))
    else
      B:residue_type(strip(sl(line, 44, 63)))
    end
    B:molecule_type(strip(sl(line, 44, 54)))
    B:topology(strip(sl(line, 55, 63)))
    if strip(sl(line, 64, 76)) ~= "" then B:set("data_file_division", sl(line, 64, 67)) end
    if date_ok(line, 68) then B:set("date", sl(line, 68, 79)) end
    return
  end
  local rest = strip(sl(line, 12))
  if count(rest, " ") == 0 then
    if rest ~= "" then B:locus(rest) end -- a truncated LOCUS line (EMBOSS)
    return
  end
  local w = words(line)
  if #w == 8 and AA_BP[w[4]] and (w[6] == "linear" or w[6] == "circular") then
    B:locus(w[2]); B:size(w[3]); B:residue_type(w[5]); B:topology(w[6])
    B:set("data_file_division", w[7]); B:set("date", w[8])
  elseif #w == 7 and AA_BP[w[4]] then
    B:locus(w[2]); B:size(w[3]); B:residue_type(w[5])
    B:set("data_file_division", w[6]); B:set("date", w[7])
  elseif #w >= 4 and AA_BP[w[4]] then
    B:locus(w[2]); B:size(w[3])
  elseif #w >= 4 and AA_BP[w[#w]] then
    B:locus(strip(strip(sl(line, 5)):match("^(.-)[ \t\r\n\v\f]+%S+[ \t\r\n\v\f]+%S+$")))
    B:size(w[#w - 1])
  else
    S.fail("did not recognise the LOCUS line layout")
  end
end

-- Keywords whose (continued) text goes to one builder call (GenBankScanner's consumer_dict).
local SIMPLE = {
  DEFINITION = "definition", ACCESSION = "accession", NID = "nid", PID = "pid", DBSOURCE = "db_source",
  KEYWORDS = "keywords", SEGMENT = "segment", SOURCE = "source", AUTHORS = "authors", CONSRTM = "consrtm",
  PROJECT = "project", TITLE = "title", JOURNAL = "journal", MEDLINE = "medline_id", PUBMED = "pubmed_id",
  REMARK = "remark",
}

local LINEAGE_ROOTS = I.set_of { "Bacteria.", "Archaea.", "Eukaryota.", "Unclassified.", "Viruses.",
  "cellular organisms.", "other sequences.", "unclassified sequences." }

-- "(.+?)\s*::\s*(.*)": the shortest non-empty name before optional space and "::".
local function structured_pair(data)
  for p = 1, #data - 1 do
    local _, e = find(data, "^%s*::%s*", p + 1)
    if e then return sub(data, 1, p), sub(data, e + 1) end
  end
end

local function structured_key(data)
  return data:match("([^#]+)%-START##$")
end

-- The header lines (GenBankScanner._feed_header_lines).
local function feed_header_lines(S, B, all, all_nums)
  local lines, nums = {}, {}
  for k, l in ipairs(all) do
    if l ~= "" then lines[#lines + 1], nums[#lines + 1] = l, all_nums[k] end
  end
  lines[#lines + 1] = "" -- the end (Biopython appends "" too)
  local i = 0
  local function nxt()
    i = i + 1
    if i > #lines then S.fail("problem in the header") end
    S.at = nums[i] or S.at
    return lines[i]
  end
  local match_name -- the last structured comment field (Biopython's `match`)
  local line = nxt()
  while line ~= "" do
    local kind, data = strip(sl(line, 0, 12)), strip(sl(line, 12))
    if kind == "VERSION" then
      data = I.collapse_spaces(data)
      local gi = find(data, " GI:", 1, true)
      if not gi then B:version(data)
      else
        local parts = split(data, " GI:")
        B:version(parts[1])
        B:set("gi", parts[2])
      end
      line = nxt()
    elseif kind == "DBLINK" then
      local text = strip(data)
      while true do
        local nl = nxt()
        if sl(nl, 0, 12) == SPACER then
          if not contains(nl, ":") then text = text .. " " .. strip(nl)
          else B:dblink(strip(text)); text = nl end
        else
          B:dblink(strip(text)); line = nl
          break
        end
      end
    elseif kind == "REFERENCE" then
      while true do
        line = nxt()
        if sl(line, 0, 12) ~= SPACER then break end
        data = data .. " " .. sl(line, 12)
      end
      data = I.collapse_spaces(data)
      local sp = find(data, " ", 1, true)
      B:reference_num()
      if sp then B:reference_bases(sub(data, sp + 1)) end
    elseif kind == "ORGANISM" then
      local organism, lineage = data, ""
      while true do
        line = nxt()
        if sl(line, 0, 12) ~= SPACER then break end
        local rest = sl(line, 12)
        if lineage ~= "" or contains(line, ";") or LINEAGE_ROOTS[strip(rest)] then
          lineage = lineage .. " " .. rest
        elseif strip(rest) ~= "." then
          organism = organism .. " " .. strip(rest)
        end
      end
      B:set("organism", organism)
      B:taxonomy(strip(lineage))
    elseif kind == "COMMENT" then
      data = sl(line, 12)
      local comments, structured, skey = {}, {}, structured_key(data)
      local any_structured = false
      if skey == nil then comments[#comments + 1] = data end
      while true do
        line = nxt()
        if sl(line, 0, 12) ~= SPACER then break end
        data = sl(line, 12)
        if contains(data, "-START##") then
          local k = structured_key(data)
          if k then skey = k else comments[#comments + 1] = data end
        elseif skey ~= nil and contains(data, "::") then
          local name, value = structured_pair(data)
          match_name = name
          if structured[skey] == nil then I.put_in_order(structured, skey, {}) end
          I.put_in_order(structured[skey], name, value)
          any_structured = true
        elseif skey ~= nil and not contains(data, "-END##") then
          -- a continued value; Biopython warns and drops it when no field came first
          if structured[skey] then
            local t = structured[skey]
            t[match_name] = (t[match_name] or "") .. " " .. strip(line)
          end
        elseif contains(data, "-END##") then
          skey = nil
        else
          comments[#comments + 1] = data
        end
      end
      if #comments > 0 then B:comment(comments) end
      if any_structured then B:set("structured_comment", structured) end
    elseif SIMPLE[kind] then
      while true do
        line = nxt()
        if sl(line, 0, 12) ~= SPACER then break end
        data = data .. " " .. sl(line, 12)
      end
      if kind == "DEFINITION" and sub(data, -1) == "." then data = sub(data, 1, -2) end
      B:consume(SIMPLE[kind], data)
    else
      line = nxt() -- a keyword Biopython ignores
    end
  end
end

local SEQUENCE_HEADERS = I.set_of { "CONTIG", "ORIGIN", "BASE COUNT", "WGS", "TSA", "TLS" }

local function is_seq_header(line) return SEQUENCE_HEADERS[rstrip(sub(line, 1, 12))] end

-- The lines from ORIGIN/CONTIG/... to "//" (GenBankScanner.parse_footer):
-- the misc lines, and the sequence lines from column 11 (the reader removes the spaces).
local function parse_footer(S)
  local line = S.line
  if not is_seq_header(line) then S.fail("footer format unexpected: '%s'", line) end
  local misc = {}
  while is_seq_header(line) or sub(line, 1, 12) == SPACER or sub(line, 1, 3) == "WGS" do
    misc[#misc + 1] = rstrip(line)
    line = S.readline()
    if line == nil then S.fail("premature end of file after '%s'", misc[#misc]) end
  end
  local seq = {}
  while true do
    if line == nil then line = "//"; break end -- no "//" at the end: Biopython warns
    line = rstrip(line)
    if line == "//" or startswith(line, "CONTIG") then break end
    if line ~= "" then -- a blank line in the sequence: Biopython warns
      if #line > 9 and sub(line, 10, 10) ~= " " then
        line = sub(line, 2) -- one column too far right: Biopython warns and shifts it
        if #line > 9 and sub(line, 10, 10) ~= " " then S.fail("sequence line mal-formed: '%s'", line) end
      end
      seq[#seq + 1] = sub(line, 11)
    end
    line = S.readline()
  end
  if line ~= "//" then S.fail("a CONTIG line after the sequence (Biopython expects '//' here)") end
  return misc, seq
end

-- TLS/TSA/WGS/WGS_SCAFLD/CONTIG (GenBankScanner._feed_misc_lines).
local function feed_misc_lines(S, B, lines)
  local nxt = I.cursor(lines)
  for raw in nxt do
    local line = raw
    if startswith(line, "BASE COUNT") then line = strip(sub(line, 11)) end
    if startswith(line, "ORIGIN") then line = strip(sub(line, 7)) end
    if startswith(line, "TLS ") then line = strip(sub(line, 4)); B:dashed("tls", line) end
    if startswith(line, "TSA ") then line = strip(sub(line, 4)); B:dashed("tsa", line) end
    if startswith(line, "WGS ") then line = strip(sub(line, 4)); B:dashed("wgs", line) end
    if startswith(line, "WGS_SCAFLD") then line = strip(sub(line, 11)); B:add_wgs_scafld(line) end
    if startswith(line, "CONTIG") then
      local contig = strip(sub(line, 7))
      while true do
        line = nxt()
        if line == "" then break end
        if sub(line, 1, 12) == SPACER then contig = contig .. rstrip(sub(line, 13))
        elseif startswith(line, "ORIGIN") then break
        else S.fail("expected a CONTIG continuation line, got '%s'", line) end
      end
      B:set("contig", contig)
    end
  end
end

-- Header keywords in columns 1-12; the feature table has no line prefix and no end marker.
I.install(M, "bio.genbank", "genbank", {
  "LOCUS       ", { "FEATURES             Location/Qualifiers", "FEATURES" }, {}, "", SEQUENCE_HEADERS,
  feed_first_line, feed_header_lines, parse_footer, feed_misc_lines })

return M
