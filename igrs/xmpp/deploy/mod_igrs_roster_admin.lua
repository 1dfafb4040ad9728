-- IGRS roster writer for Prosody 0.12 (specs/relay-xmpp-server.md, "Per server").
-- The bind component (XEP-0114, JID set by igrs_component, default "igrs.<host>") relates or
-- unrelates two local accounts with one IQ to the server:
--   <iq type='set' to='HOST'><query xmlns='urn:igrs:xmpp:roster-admin:0'>
--     <relate a='user@HOST' b='device@HOST'/>   (or <unrelate .../>, several per query)
--   </query></iq>
-- relate writes both rosters (subscription both, group IGRS) and exchanges the online
-- resources' presence; unrelate removes both items and sends each side's unavailable.
-- Online sessions get roster pushes. Only the component may ask: a stanza from any other
-- origin gets forbidden.

local jid_split = require "util.jid".split;
local st = require "util.stanza";
local rostermanager = require "core.rostermanager";
local um_user_exists = require "core.usermanager".user_exists;

local NS = "urn:igrs:xmpp:roster-admin:0";
local component = module:get_option_string("igrs_component", "igrs." .. module.host);

local function send_presence(user, to_bare, kind)
	local session = prosody.hosts[module.host].sessions[user];
	if not session then return; end
	for _, s in pairs(session.sessions) do
		if s.presence then
			local pres = kind and st.presence({ type = kind }) or st.clone(s.presence);
			pres.attr.from, pres.attr.to = s.full_jid, to_bare;
			module:send(pres);
		end
	end
end

local function local_user(j)
	local node, host, resource = jid_split(j);
	if not node or host ~= module.host or resource then return nil; end
	return node;
end

local function set_item(user, contact, item)
	local roster = rostermanager.load_roster(user, module.host);
	roster[contact] = item;
	local ok, err = rostermanager.save_roster(user, module.host, roster, contact);
	if not ok then return nil, err or "roster not saved"; end
	rostermanager.roster_push(user, module.host, contact);
	return true;
end

local function apply(op, a, b)
	local ua, ub = local_user(a), local_user(b);
	if not ua or not ub or not um_user_exists(ua, module.host) or not um_user_exists(ub, module.host) then
		return nil, "item-not-found";
	end
	for _, pair in ipairs({ { ua, b, ub }, { ub, a, ua } }) do
		local user, contact = pair[1], pair[2];
		local item = op == "relate" and { subscription = "both", name = pair[3], groups = { IGRS = true } } or nil;
		local ok, err = set_item(user, contact, item);
		if not ok then return nil, "internal-server-error", err; end
	end
	local kind = op == "unrelate" and "unavailable" or nil;
	send_presence(ua, b, kind);
	send_presence(ub, a, kind);
	return true;
end

module:hook("iq-set/host/" .. NS .. ":query", function(event)
	local origin, stanza = event.origin, event.stanza;
	if origin.type ~= "component" or stanza.attr.from ~= component then
		origin.send(st.error_reply(stanza, "auth", "forbidden"));
		return true;
	end
	for child in stanza.tags[1]:childtags() do
		if child.name == "relate" or child.name == "unrelate" then
			local ok, condition, text = apply(child.name, child.attr.a, child.attr.b);
			if not ok then
				origin.send(st.error_reply(stanza, "cancel", condition, text));
				return true;
			end
		end
	end
	origin.send(st.reply(stanza));
	return true;
end);
